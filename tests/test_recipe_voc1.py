"""The voc1 recipe (egs/TEMPLATE/voc1/voc.sh) on a few synthetic utterances: features, GTA checks, a tiny training.

A copy of the mini recipe tree gets a hand-made tts1 ``dump/raw`` (what tts1 stage 1 writes); tts1 stage 2 runs for
real on it, so that the vocoder's features are compared with the statistics ESPnet's TTS training sees. The vocoder
is the mini recipe's tiny HiFi-GAN trained for a handful of steps: plumbing, not quality.
"""

import shutil
import subprocess
import time

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import REPO, run_module, write_tone
from test_recipe_mini import copy_tree

SETS = {"tr_no_dev": 4, "dev": 2, "eval1": 2}
HOP = 256
FMIN = 40  # egs/mini_espeak's --fmin (its eSpeak voice is low)
WORDS = ["a short tone.", "another one, please!", "tones are not speech?", "the fourth sentence."]


def run_voc(voc, *args):
    return subprocess.run(["./run.sh", "--nj", "1", *map(str, args)], cwd=voc, capture_output=True, text=True)


def read_h5(path):
    with h5py.File(path, "r") as f:
        return f["wave"][()], f["feats"][()]


def espnet_logmel(wav):
    """ESPnet's LogMelFbank at the recipe's settings (those tts.sh passes as --feats_extract_conf)."""
    from espnet2.tts.feats_extract.log_mel_fbank import LogMelFbank

    fe = LogMelFbank(fs=22050, n_fft=1024, win_length=1024, hop_length=HOP, n_mels=80, fmin=FMIN, fmax=7600)
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(wav, dtype=np.float32))[None]
        return fe(x, torch.tensor([x.shape[1]]))[0][0].numpy()


def make_tts1_data(tts, audio_dir):
    """tts1 stage 1's output for SETS: tones at 22050 Hz (training ones all 0.6 s: no padding in ESPnet's batches)."""
    audio_dir.mkdir()
    for dset, n in SETS.items():
        d = tts / "dump/raw" / dset
        d.mkdir(parents=True)
        files = {k: [] for k in ["wav.scp", "text", "utt2spk", "spk2utt", "utt2num_samples"]}
        for i in range(n):
            utt = f"{dset}-{i}"
            seconds = 0.6 if dset == "tr_no_dev" else 0.4 + 0.13 * i
            wav = write_tone(audio_dir / f"{utt}.wav", seconds=seconds, freq=140.0 + 60 * i)
            files["wav.scp"].append(f"{utt} {wav}")
            files["text"].append(f"{utt} {WORDS[i]}")
            files["utt2spk"].append(f"{utt} tone")
            files["utt2num_samples"].append(f"{utt} {int(seconds * 22050)}")
        files["spk2utt"] = ["tone " + " ".join(f"{dset}-{i}" for i in range(n))]
        for name, lines in files.items():
            (d / name).write_text("".join(line + "\n" for line in lines))


def tiny_config(path, steps):
    """The mini recipe's config, trained for a few steps on short segments."""
    conf = yaml.safe_load((REPO / "egs/mini_espeak/voc1/conf/hifigan_tiny.yaml").read_text())
    conf.update(train_max_steps=steps, save_interval_steps=2, eval_interval_steps=2, log_interval_steps=1,
                discriminator_train_start_steps=2, batch_size=2, batch_max_steps=8 * HOP,
                num_save_intermediate_results=1)
    path.write_text(yaml.safe_dump(conf))
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """tts1 stages 1 (hand-made) and 2 (real), then voc1 stages 1-2 and 3-4 (a 4-step training, timed)."""
    root = tmp_path_factory.mktemp("tree")
    tts = copy_tree(root)
    voc = tts.parent / "voc1"
    make_tts1_data(tts, root / "audio")
    proc = subprocess.run(["./run.sh", "--stage", "2", "--stop-stage", "2", "--nj", "1", "--train_config",
                           str(REPO / "tests/data/train_tacotron2_tiny.yaml")], cwd=tts, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    conf = tiny_config(root / "hifigan_ci.yaml", steps=4)
    proc = run_voc(voc, "--stop-stage", "2", "--conf", conf)
    assert proc.returncode == 0, proc.stderr[-3000:]
    t0 = time.perf_counter()
    proc = run_voc(voc, "--stage", "3", "--conf", conf)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(tts=tts, voc=voc, conf=conf, exp=voc / "exp/voc_hifigan_ci", seconds=time.perf_counter() - t0,
                log=proc.stderr)


def test_dumps_hold_espnet_mels_and_matching_audio(tree):
    for dset, n in SETS.items():
        dumps = sorted((tree["voc"] / "dump/ref" / dset / "raw").rglob("*.h5"))
        assert [p.stem for p in dumps] == [f"{dset}-{i}" for i in range(n)]
        for p in dumps:
            wave, feats = read_h5(p)
            ref, fs = sf.read(tree["voc"].parents[2] / "audio" / f"{p.stem}.wav", dtype="float32")
            mel = espnet_logmel(ref)
            assert feats.shape == mel.shape == (len(ref) // HOP + 1, 80)
            np.testing.assert_allclose(feats, mel, atol=1e-3)
            # parallel-wavegan's rule: the audio, end padded with its last sample, T * hop samples long
            assert wave.dtype == np.float32 and len(wave) == len(feats) * HOP
            np.testing.assert_array_equal(wave[: len(ref)], ref)
            assert np.all(wave[len(ref):] == ref[-1])


def test_dumps_match_the_tts_recipes_feature_statistics(tree):
    """The training mels are those tts1 stage 2 (ESPnet's collect_stats) saw: same frames, same sums."""
    stats = np.load(tree["tts"] / "exp/tts_stats_raw_char_tacotron/train/feats_stats.npz")
    feats = np.concatenate([read_h5(p)[1] for p in (tree["voc"] / "dump/ref/tr_no_dev/raw").rglob("*.h5")])
    assert int(stats["count"]) == len(feats)
    np.testing.assert_allclose(feats.mean(0), stats["sum"] / stats["count"], atol=1e-3)
    np.testing.assert_allclose((feats.astype(np.float64) ** 2).mean(0), stats["sum_square"] / stats["count"],
                               rtol=1e-4, atol=1e-3)


def test_training_leaves_a_self_contained_checkpoint_dir(tree):
    exp = tree["exp"]
    print(f"voc1 stages 3-4 (4 training steps, 4 decodes): {tree['seconds']:.1f} s")
    assert tree["seconds"] < 120, tree["seconds"]  # training and decoding (stages 3-4): ~20 s on an idle core
    assert (exp / "checkpoint-4steps.pkl").is_file() and (exp / "config.yml").is_file()
    with h5py.File(exp / "stats.h5", "r") as a, h5py.File(tree["voc"] / "dump/ref/tr_no_dev/stats.h5", "r") as b:
        np.testing.assert_array_equal(a["mean"][()], b["mean"][()])
        mean = a["mean"][()]
    feats = np.concatenate([read_h5(p)[1] for p in (tree["voc"] / "dump/ref/tr_no_dev/raw").rglob("*.h5")])
    np.testing.assert_allclose(mean, feats.mean(0), atol=1e-4)
    config = yaml.safe_load((exp / "config.yml").read_text())
    assert (config["sampling_rate"], config["hop_size"], config["fmin"], config["fmax"]) == (22050, HOP, FMIN, 7600)
    assert "Stage 3: vocoder ready: exp/voc_hifigan_ci/checkpoint-4steps.pkl" in tree["log"]


def test_the_checkpoint_loads_as_the_tts_recipes_vocoder(tree):
    """What stage 7 does with --vocoder_file: check the directory, normalise with its stats.h5, generate."""
    from ebm.vocoder import FeatureSettings, load_vocoder

    vocoder = load_vocoder(str(tree["exp"] / "checkpoint-4steps.pkl"), FeatureSettings(fmin=FMIN))
    wav = vocoder(read_h5(next((tree["voc"] / "dump/ref/dev/raw").rglob("*.h5")))[1])
    assert wav.ndim == 1 and np.all(np.isfinite(wav))


def test_copy_synthesis_of_dev_and_eval(tree):
    for dset in ["dev", "eval1"]:
        out = tree["exp"] / "wav_copy" / dset
        lines = (out / "wav.scp").read_text().splitlines()
        assert [line.split()[0] for line in lines] == [f"{dset}-{i}" for i in range(SETS[dset])]
        for line in lines:
            utt, path = line.split()
            wav, fs = sf.read(path)
            frames = read_h5(next((tree["voc"] / "dump/ref" / dset / "raw").rglob(f"{utt}.h5")))[1].shape[0]
            assert fs == 22050 and len(wav) == frames * HOP and np.all(np.isfinite(wav))


def test_training_resumes_from_the_newest_checkpoint(tree, tmp_path):
    conf = tiny_config(tmp_path / "hifigan_ci.yaml", steps=6)
    proc = run_voc(tree["voc"], "--stage", "3", "--stop-stage", "3", "--conf", conf)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tree["exp"]
    assert "resuming from exp/voc_hifigan_ci/checkpoint-4steps.pkl" in proc.stderr
    assert "Successfully resumed" in (exp / "train.log").read_text()
    assert (exp / "train.1.log").is_file() and (exp / "checkpoint-6steps.pkl").is_file()
    proc = run_voc(tree["voc"], "--stage", "3", "--stop-stage", "3", "--conf", conf)
    assert proc.returncode == 0 and "has reached train_max_steps 6" in proc.stderr


def test_a_config_with_other_features_is_refused(tree, tmp_path):
    conf = yaml.safe_load(tree["conf"].read_text())
    conf.update(fmax=8000, hop_size=300)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(conf))
    proc = run_voc(tree["voc"], "--stage", "3", "--conf", tmp_path / "bad.yaml")
    assert proc.returncode != 0
    assert "hop_size=300 but the recipe's --n_shift is 256" in proc.stderr
    assert "fmax=8000 but the recipe's --fmax is 7600" in proc.stderr
    assert not (tree["voc"] / "exp/voc_bad").exists()


def test_an_imported_vocoder_needs_its_stats(tree, tmp_path):
    src = tmp_path / "vocoder"
    src.mkdir()
    for f in ["checkpoint-4steps.pkl", "config.yml"]:
        shutil.copy(tree["exp"] / f, src / f)
    proc = run_voc(tree["voc"], "--stage", "3", "--stop-stage", "3", "--vocoder_file", src / "checkpoint-4steps.pkl")
    assert proc.returncode != 0 and "stats.h5 is missing" in proc.stderr
    shutil.copy(tree["exp"] / "stats.h5", src / "stats.h5")
    proc = run_voc(tree["voc"], "--stage", "3", "--stop-stage", "3", "--vocoder_file", src / "checkpoint-4steps.pkl")
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = tree["voc"] / "exp/voc_imported"
    assert {p.name for p in imported.iterdir()} == {"checkpoint-4steps.pkl", "config.yml", "stats.h5"}
    assert (imported / "stats.h5").resolve() == (src / "stats.h5").resolve()


def test_missing_tts_data_says_which_stage_to_run(tree, tmp_path):
    proc = run_voc(tree["voc"], "--stop-stage", "1", "--conf", tree["conf"], "--tts_dir", tmp_path)
    assert proc.returncode != 0
    assert f"{tmp_path}/dump/raw/tr_no_dev/wav.scp is missing" in proc.stderr and "--stop-stage 1" in proc.stderr


# GTA dumps: the teacher-forced mels of tts1 stage 4 replace the reference mels, checked against the audio.

@pytest.fixture
def gta(tmp_path):
    """Two utterances (53 and 60 frames) with their reference mels written as a stage-4-like feats.scp."""
    wav_scp, feats_scp, mels = [], [], {}
    (tmp_path / "denorm").mkdir()
    for utt, seconds in [("u1", 0.61), ("u2", 0.69)]:
        wav = write_tone(tmp_path / f"{utt}.wav", seconds=seconds)
        mels[utt] = espnet_logmel(sf.read(wav, dtype="float32")[0])
        np.save(tmp_path / "denorm" / f"{utt}.npy", mels[utt])
        wav_scp.append(f"{utt} {wav}\n")
        feats_scp.append(f"{utt} denorm/{utt}.npy\n")  # relative to the TTS recipe, as ESPnet writes them
    (tmp_path / "wav.scp").write_text("".join(wav_scp))
    (tmp_path / "feats.scp").write_text("".join(feats_scp))
    (tmp_path / "config.yaml").write_text("tts: tacotron2\ntts_conf:\n    reduction_factor: 2\n")
    return tmp_path, mels


def dump_gta(d, *extra):
    return run_module("ebm.bin.dump_vocoder_feats", d / "wav.scp", d / "out", "--gta_feats_scp", d / "feats.scp",
                      "--base_dir", d, *extra)


def test_gta_dump_takes_the_decoded_mels(gta):
    d, mels = gta
    # reduction factor 2: the odd-length u1 (53 frames) is teacher-forced to 52; the audio is cut to match
    np.save(d / "denorm/u1.npy", mels["u1"][:52] + 0.5)
    proc = dump_gta(d, "--gta_tts_config", d / "config.yaml")
    assert proc.returncode == 0, proc.stderr
    wave, feats = read_h5(d / "out/u1.h5")
    np.testing.assert_array_equal(feats, mels["u1"][:52] + 0.5)
    assert len(wave) == 52 * HOP
    wave, feats = read_h5(d / "out/u2.h5")
    assert feats.shape == (60, 80) and len(wave) == 60 * HOP


def test_gta_dump_refuses_a_frame_count_mismatch_naming_the_utterance(gta):
    d, mels = gta
    np.save(d / "denorm/u2.npy", mels["u2"][:55])
    proc = dump_gta(d, "--gta_tts_config", d / "config.yaml")
    assert proc.returncode != 0
    assert "ERROR:" in proc.stderr and "u2: its mel in" in proc.stderr
    assert "has 55 frames but its audio has 60" in proc.stderr
    assert not (d / "out").exists()  # nothing half-written
    # without the TTS model's reduction factor a shorter mel is a mismatch too
    np.save(d / "denorm/u2.npy", mels["u2"])
    np.save(d / "denorm/u1.npy", mels["u1"][:52])
    proc = dump_gta(d)
    assert proc.returncode != 0 and "u1: its mel in" in proc.stderr
    assert "has 52 frames but its audio has 53" in proc.stderr


def test_gta_dump_refuses_missing_utterances(gta):
    d, _ = gta
    (d / "feats.scp").write_text("u1 denorm/u1.npy\n")
    proc = dump_gta(d)
    assert proc.returncode != 0 and "have no mel in" in proc.stderr and "u2" in proc.stderr


def test_gta_option_dumps_teacher_forced_mels_for_training(tree):
    """voc.sh --gta true: train and dev from tts1 stage 4's teacher-forced mels, copy-synthesis input unchanged."""
    tts, voc = tree["tts"], tree["voc"]
    exp = tts / "exp/tts_fake"
    (exp / "decode_teacher_forced").mkdir(parents=True)
    (exp / "config.yaml").write_text("tts: tacotron2\ntts_conf:\n    reduction_factor: 2\n")
    tf = {}
    for dset in ["tr_no_dev", "dev"]:
        d = exp / "decode_teacher_forced" / dset / "denorm"
        d.mkdir(parents=True)
        lines = []
        for utt, path in (line.split() for line in (tts / "dump/raw" / dset / "wav.scp").read_text().splitlines()):
            mel = espnet_logmel(sf.read(path, dtype="float32")[0])
            tf[utt] = mel[: len(mel) - len(mel) % 2] + 0.25  # what teacher forcing with reduction factor 2 gives
            np.save(d / f"{utt}.npy", tf[utt])
            lines.append(f"{utt} exp/tts_fake/decode_teacher_forced/{dset}/denorm/{utt}.npy\n")
        (d / "feats.scp").write_text("".join(lines))
    proc = run_voc(voc, "--stop-stage", "2", "--conf", tree["conf"], "--gta", "true", "--tts_exp", "exp/tts_fake")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for dset in ["tr_no_dev", "dev"]:
        for p in (voc / "dump/gta_tts_fake" / dset / "raw").rglob("*.h5"):
            wave, feats = read_h5(p)
            np.testing.assert_array_equal(feats, tf[p.stem])
            assert len(wave) == len(feats) * HOP
        assert len(list((voc / "dump/gta_tts_fake" / dset / "norm").rglob("*.h5"))) == SETS[dset]
    with h5py.File(voc / "dump/gta_tts_fake/tr_no_dev/stats.h5", "r") as f:  # statistics of the GTA mels
        feats = np.concatenate([tf[f"tr_no_dev-{i}"] for i in range(SETS["tr_no_dev"])])
        np.testing.assert_allclose(f["mean"][()], feats.mean(0), atol=1e-4)
    assert "dumping tr_no_dev (ESPnet" not in proc.stderr  # reference mels only for copy-synthesis (dev, eval)


# --vocoder_tag: parallel-wavegan's pretrained models, which need a network.

def test_vocoder_tag_offline_fails_at_once(monkeypatch, tmp_path):
    from ebm.bin import fetch_vocoder
    from ebm.cli import EbmError

    monkeypatch.setattr(fetch_vocoder, "DOWNLOAD_HOST", "pretrained-models.invalid")  # never resolves
    t0 = time.perf_counter()
    with pytest.raises(EbmError) as e:
        fetch_vocoder.fetch_tag("ljspeech_hifigan.v1", str(tmp_path), timeout=2)
    assert time.perf_counter() - t0 < 5
    assert "no connection to" in str(e.value) and "--vocoder_file" in str(e.value)
    assert not (tmp_path / "ljspeech_hifigan.v1").exists()
    with pytest.raises(EbmError, match="unknown vocoder tag 'ljspeech_hifigan.v9'.*ljspeech_hifigan.v1"):
        fetch_vocoder.fetch_tag("ljspeech_hifigan.v9", str(tmp_path), timeout=2)


def test_vocoder_tag_uses_a_downloaded_copy_without_network(monkeypatch, tmp_path):
    from ebm.bin import fetch_vocoder

    monkeypatch.setattr(fetch_vocoder, "DOWNLOAD_HOST", "pretrained-models.invalid")
    (tmp_path / "ljspeech_hifigan.v1").mkdir()
    ckpt = tmp_path / "ljspeech_hifigan.v1/checkpoint-2500000steps.pkl"
    ckpt.write_bytes(b"")
    assert fetch_vocoder.fetch_tag("ljspeech_hifigan.v1", str(tmp_path), timeout=2) == str(ckpt)


def run_sh_words(path):
    """The words of a run.sh outside its comments (which may name options too)."""
    lines = path.read_text().splitlines()
    return [w for line in lines if not line.lstrip().startswith("#") for w in line.split()]


def test_recipes_configs_match_their_tts_features():
    """Each voc1 run.sh's --conf has the feature settings its run.sh (and ../tts1/run.sh) passes."""
    keys = {"--fs": "sampling_rate", "--n_fft": "fft_size", "--n_shift": "hop_size", "--n_mels": "num_mels",
            "--fmin": "fmin", "--fmax": "fmax"}
    for corpus in ["mini_espeak", "ljspeech"]:
        voc = REPO / "egs" / corpus / "voc1"
        words, tts_words = run_sh_words(voc / "run.sh"), run_sh_words(voc.parent / "tts1/run.sh")
        conf = yaml.safe_load((voc / words[words.index("--conf") + 1]).read_text())
        for opt, key in keys.items():
            value = float(words[words.index(opt) + 1])
            assert value == float(tts_words[tts_words.index(opt) + 1]) == float(conf[key]), (corpus, opt)
        assert conf["win_length"] in (None, conf["fft_size"]) and conf["format"] == "hdf5"
        assert np.prod(conf["generator_params"]["upsample_scales"]) == conf["hop_size"]
        assert (voc / "voc.sh").resolve() == REPO / "egs/TEMPLATE/voc1/voc.sh"
        for name in ["path.sh", "cmd.sh", "db.sh", "utils/run.pl", "conf/slurm.conf"]:
            assert (voc / name).exists(), (corpus, name)
