"""Stages 0-2 of egs/mini_espeak/tts1 run for real in a temporary copy of the recipe tree."""

import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO, run_module


def copy_tree(dst):
    """The recipe with its links intact; tools/ is linked so that path.sh finds the installed venv."""
    ignore = shutil.ignore_patterns("data", "dump", "exp", "downloads", "__pycache__")
    for sub in ["egs/TEMPLATE", "egs/mini_espeak", "utils"]:
        shutil.copytree(REPO / sub, dst / sub, symlinks=True, ignore=ignore)
    os.symlink(REPO / "tools", dst / "tools")
    return dst / "egs/mini_espeak/tts1"


def run_recipe(recipe, *args):
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    recipe = copy_tree(tmp_path_factory.mktemp("tree"))
    proc = run_recipe(recipe, "--stage", "0", "--stop-stage", "2", "--nj", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (recipe / "stages_0_2.log").write_text(proc.stderr)
    return recipe


def read_ids(path):
    return [line.split(maxsplit=1)[0] for line in path.read_text().splitlines()]


def test_data_dirs_and_split(recipe):
    sizes = {s: len(read_ids(recipe / "dump/raw" / s / "wav.scp")) for s in ["tr_no_dev", "dev", "eval1"]}
    assert sizes == {"tr_no_dev": 340, "dev": 30, "eval1": 30}
    dev, ev = read_ids(recipe / "dump/raw/dev/text"), read_ids(recipe / "dump/raw/eval1/text")
    train = read_ids(recipe / "dump/raw/tr_no_dev/text")
    assert max(train) < min(dev) and max(dev) < min(ev)  # held-out ids are the last ones, dev before eval
    for s in sizes:
        d = recipe / "dump/raw" / s
        for f in ["wav.scp", "text", "utt2spk", "spk2utt", "utt2num_samples"]:
            assert (d / f).is_file(), f"{d / f} missing"


def test_mel_band_covers_the_espeak_voice(recipe):
    """run.sh's --fmin 40 suits the low eSpeak voice; ESPnet's 80 would not (stage 2 would say so)."""
    log = (recipe / "stages_0_2.log").read_text()
    assert "the mel band's first filter (--fmin 40, --n_mels 80) peaks at 76 Hz: the band covers the voice" in log
    assert not [line for line in log.splitlines() if "check_mel_band" in line and "WARNING" in line]
    proc = run_module("ebm.bin.check_mel_band", "--wav_scp", "dump/raw/tr_no_dev/wav.scp", "--fmin", 80, cwd=recipe)
    assert proc.returncode == 0 and "peaks at 116 Hz: most fundamentals fall below it" in proc.stderr
    assert "Rerun from stage 2 with --fmin 40" in proc.stderr


def test_token_list(recipe):
    tokens = (recipe / "dump/token_list/char/tokens.txt").read_text().split("\n")[:-1]
    assert tokens[:3] == ["<blank>", "<unk>", "<space>"] and tokens[-1] == "<sos/eos>"
    assert {"A", "E", "Z", "?", ","} <= set(tokens)


def test_feature_statistics(recipe):
    stats_dir = recipe / "exp/tts_stats_raw_char_tacotron"
    stats = np.load(stats_dir / "train/feats_stats.npz")
    assert stats["sum"].shape == (80,)  # n_mels
    assert int(stats["count"]) > 340 * 50  # frames of all training utterances
    mean = stats["sum"] / stats["count"]
    assert np.all(np.isfinite(mean)) and -6 < mean.mean() < 1  # log10 mel magnitudes
    assert len(read_ids(stats_dir / "train/speech_shape")) == 340
    assert len(read_ids(stats_dir / "valid/text_shape")) == 30
    assert (stats_dir / "logdir/stats.1.log").read_text().count("# Ended (code 0)") == 1


def test_corrupt_wav_stops_stage_1_naming_it(recipe):
    wav = recipe / "downloads/mini_espeak/wavs/ME-0385.wav"  # in eval1
    saved = wav.read_bytes()
    try:
        wav.write_bytes(b"RIFF" + os.urandom(40))
        proc = run_recipe(recipe, "--stage", "1", "--stop-stage", "1")
        assert proc.returncode != 0
        assert "ME-0385: corrupt or unreadable wav" in proc.stderr
        assert not (recipe / "dump/raw/eval1/wav.scp").exists()  # no half-formatted set left behind
    finally:
        wav.write_bytes(saved)


def test_bad_gpu_inference_value_is_refused(recipe):
    proc = run_recipe(recipe, "--stage", "4", "--stop-stage", "4", "--gpu_inference", "yes")
    assert proc.returncode != 0
    assert "option --gpu_inference expects true or false, got 'yes'" in proc.stderr
