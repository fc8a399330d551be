"""Bad corpus data and text, each built in a tiny temporary corpus: refused with the file or utterance named, a
non-zero exit and nothing left that looks complete; or, for what is only suspicious, warned about by name."""

import math
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run_module, write_tone
from test_ljspeech_prep import make_corpus, thirty_lines
from test_recipe_mini import run_recipe

from ebm.bin import prepare_ljspeech_layout
from ebm.cli import EbmError
from ebm.data.ljspeech import CorpusError, prepare


def write_text(path, lines):
    path.write_text("".join(f"{u} {t}\n" for u, t in lines), encoding="utf-8")
    return path


def cut_short(path, keep_seconds, fs=22050):
    """Truncate a 16-bit mono wav's data, leaving its header (and so its promised length) as it was."""
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * int(keep_seconds * fs)])
    return path


# --- transcripts: checked raw, before the cleaner -------------------------------------------------------------

def test_foreign_script_emoji_and_punctuation_only_are_refused(tmp_path):
    text = write_text(tmp_path / "text", [
        ("u1", "Caf\u00e9 \u201cna\u00efve\u201d \u2014 it\u2019s fine\u2026"),  # Latin and typographic: accepted
        ("u2", "\u4f60\u597d world"),
        ("u3", "\u041f\u0440\u0438\u0432\u0435\u0442 world"),
        ("u4", "I love \U0001f355 pizza"),
        ("u5", "...!?"),
        ("u6", "It was 1816."),
    ])
    proc = run_module("ebm.bin.check_text", text)
    assert proc.returncode == 1
    assert "4 bad transcripts" in proc.stderr and "Traceback" not in proc.stderr
    assert "u2: characters outside the recipe's language" in proc.stderr
    assert "'\u4f60' (U+4F60, -> 'Ni')" in proc.stderr and "'\u597d' (U+597D" in proc.stderr
    assert "u3: characters outside" in proc.stderr and "(U+041F, -> 'P')" in proc.stderr
    assert "--text_transliterate true" in proc.stderr
    assert "u4: the cleaner would silently drop '\U0001f355' (U+1F355, dropped)" in proc.stderr
    assert "u5: no letters or digits in '...!?'" in proc.stderr
    assert "u1:" not in proc.stderr and "u6:" not in proc.stderr
    assert "metadata.csv" in proc.stderr and "fix_data_dir" not in proc.stderr


def test_transliteration_only_when_asked_and_logged(tmp_path):
    text = write_text(tmp_path / "text", [("u1", "\u4f60\u597d world"), ("u2", "plain"), ("u3", "emoji \U0001f355")])
    proc = run_module("ebm.bin.check_text", "--transliterate", "true", text)
    assert proc.returncode == 1  # dropping is never allowed: the audio would say what the text does not
    assert "u3: the cleaner would silently drop" in proc.stderr and "u1:" not in proc.stderr.split("ERROR")[1]
    write_text(text, [("u1", "\u4f60\u597d world"), ("u2", "plain")])
    proc = run_module("ebm.bin.check_text", "--transliterate", "true", text)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "transliterating 2 character(s)" in proc.stderr
    assert "(U+4F60, -> 'Ni')" in proc.stderr and "in u1" in proc.stderr


def test_synthesis_applies_the_same_rule():
    from espnet2.train.preprocessor import CommonPreprocessor

    from ebm.bin.synthesize import EBMText2Speech

    tts = object.__new__(EBMText2Speech)  # only the text check: no models needed
    tokens = ["<blank>", "<unk>", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "<space>", ".", ",", "<sos/eos>"]
    tts.ebm_preprocess = CommonPreprocessor(train=False, token_type="char", token_list=tokens,
                                            text_cleaner="tacotron")
    tts.device, tts._unk = "cpu", {1}
    assert len(tts._tokens("Hello world.")) == 12
    with pytest.raises(EbmError, match=r"outside the recipe's language.*'\u4f60' \(U\+4F60"):
        tts._tokens("\u4f60\u597d world")
    with pytest.raises(EbmError, match=r"no letters or digits in '\.\.\.'"):
        tts._tokens("...")
    with pytest.raises(EbmError, match=r"drop '\U0001f355'"):
        tts._tokens("pizza \U0001f355")


# --- audio ------------------------------------------------------------------------------------------------------

def test_wav_cut_short_with_intact_header_is_refused(tmp_path):
    good = write_tone(tmp_path / "good.wav", seconds=0.5)
    short = cut_short(write_tone(tmp_path / "short.wav", seconds=3.6), keep_seconds=0.45)
    assert sf.info(str(short)).frames == int(0.45 * 22050)  # libsndfile itself does not notice
    scp = write_text(tmp_path / "wav.scp", [("u1", good), ("u2", short)])
    out = tmp_path / "out"
    proc = run_module("ebm.bin.format_wav_scp", scp, out, "--fs", 22050, "--audio_dir", tmp_path / "audio")
    assert proc.returncode == 1
    assert f"u2: {short} is cut short: its header promises 79380 samples (3.60 s), the file holds 9922" in proc.stderr
    assert "u1:" not in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "out.tmp").exists()


def test_zero_sample_wav_hint_points_at_the_corpus(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.int16), 22050, subtype="PCM_16")
    scp = write_text(tmp_path / "wav.scp", [("u1", empty)])
    proc = run_module("ebm.bin.format_wav_scp", scp, tmp_path / "out", "--fs", 22050, "--audio_dir", tmp_path / "a")
    assert proc.returncode == 1
    assert "u1:" in proc.stderr and "contains no samples" in proc.stderr
    assert "metadata.csv" in proc.stderr and "fix_data_dir" not in proc.stderr
    assert not (tmp_path / "out").exists()


def make_set(d, rows, fs=22050):
    """A formatted set: text and utt2num_samples, ``rows`` = (utt, text, seconds)."""
    d.mkdir(parents=True)
    write_text(d / "text", [(u, t) for u, t, _ in rows])
    write_text(d / "utt2num_samples", [(u, int(s * fs)) for u, _, s in rows])
    return d


def test_speaking_rate_and_length_outliers_are_warned(tmp_path):
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while rain fell over old town roofs".split()
    rows = []
    for i in range(40):
        text = " ".join(rng.choice(words, size=int(rng.integers(4, 12))))
        letters = sum(c.isalpha() for c in text)
        rows.append((f"u{i:02d}", text, letters / 13.0 * float(rng.uniform(0.9, 1.1))))
    train = make_set(tmp_path / "tr_no_dev", rows[:30])
    rows = rows[30:]
    rows[0] = ("u30", rows[0][1], rows[0][2] * 0.12)                 # audio cut short: far too fast
    long_text = " ".join(["the cat sat on a mat while rain fell"] * 20)  # a 45 s utterance
    rows[1] = ("u31", long_text, sum(c.isalpha() for c in long_text) / 13.0)
    evl = make_set(tmp_path / "eval1", rows)
    conf = tmp_path / "decode.yaml"
    conf.write_text("threshold: 0.5\nmaxlenratio: 1.0e1\n")  # PyYAML reads 1.0e1 as a string
    report = tmp_path / "outliers.txt"
    proc = run_module("ebm.bin.check_speaking_rate", "--fs", 22050, "--n_shift", 256, "--inference_config", conf,
                      "--report", report, train, evl)
    assert proc.returncode == 0, proc.stderr
    assert "speaking rate over 40 utterances" in proc.stderr and "2 outlier(s)" in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 2
    assert "eval1/u30:" in warnings[0] and "fast: audio cut short" in warnings[0]
    seconds = sum(c.isalpha() for c in long_text) / 13.0
    frames = int(seconds * 22050) // 256 + 1
    cap = int((len(long_text) + 1) * 10)
    assert f"eval1/u31: very long, {seconds:.1f} s ({frames} frames" in warnings[1]
    assert f"maxlenratio 10 x about {len(long_text) + 1} tokens = {cap} frames" in warnings[1]
    assert f"({cap * 256 / 22050:.1f} s)" in warnings[1]
    listed = report.read_text().splitlines()
    assert [line.split(":")[0] for line in listed] == ["eval1/u30", "eval1/u31"]
    assert math.isclose(seconds, 45, rel_tol=0.2)


# --- corpus listing -----------------------------------------------------------------------------------------------

def test_non_utf8_metadata_names_file_and_line(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "c", thirty_lines())
    lines = (corpus / "metadata.csv").read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"comparatively", b"compar\xe9tively")  # a Latin-1 byte, line 2
    (corpus / "metadata.csv").write_bytes(b"\n".join(lines))
    with pytest.raises(CorpusError, match=r"metadata\.csv:2: byte 0xe9 at column \d+ is not UTF-8.*compar"):
        prepare(str(corpus), str(tmp_path / "data"), "tr", "dev", "eval", 2, 2)
    assert not (tmp_path / "data").exists()
    argv = ["--corpus_dir", str(corpus), "--data_dir", str(tmp_path / "data"), "--num_dev", "2", "--num_eval", "2"]
    assert prepare_ljspeech_layout.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and "metadata.csv:2:" in err and "Traceback" not in err


# --- the recipe ---------------------------------------------------------------------------------------------------

def copy_ljspeech(dst):
    for sub in ["egs/TEMPLATE", "egs/ljspeech", "utils"]:
        shutil.copytree(REPO / sub, dst / sub, symlinks=True,
                        ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads", "__pycache__"))
    os.symlink(REPO / "tools", dst / "tools")
    return dst / "egs/ljspeech/tts1"


def test_stage_2_before_stage_1_names_the_missing_file(tmp_path):
    recipe = copy_ljspeech(tmp_path / "tree")
    proc = run_recipe(recipe, "--stage", "2", "--stop-stage", "2")
    assert proc.returncode != 0
    assert "dump/raw/tr_no_dev/text is missing: run stage 1 first" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (recipe / "dump/token_list/char/tokens.txt").exists()


def test_db_root_with_space_and_foreign_text_through_stages_0_1(tmp_path):
    """A --db_root with a space works; Cyrillic text passes only with --text_transliterate true, which the log
    records; a rerun that fails the check leaves no formatted set, and stage 2 then says to run stage 1."""
    recipe = copy_ljspeech(tmp_path / "tree")
    lines = thirty_lines()
    lines[3] = "LJ001-0010|\u041f\u0440\u0438\u0432\u0435\u0442 world.|\u041f\u0440\u0438\u0432\u0435\u0442 world."
    db_root = tmp_path / "my corpora"
    corpus = make_corpus(db_root / "LJSpeech-1.1", lines)
    for line in lines:  # tones as long as the text would take to say
        utt, text = line.split("|")[0], line.split("|")[-1]
        write_tone(corpus / "wavs" / f"{utt}.wav", seconds=len(text) / 40)
    args = ["--stage", "0", "--stop-stage", "1", "--db_root", str(db_root),
            "--local_data_opts", "--num_dev 3 --num_eval 3", "--nj", "1"]

    proc = run_recipe(recipe, *args, "--text_transliterate", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using the LJSpeech copy in" in proc.stderr and "my corpora" in proc.stderr
    assert "--text_transliterate true" in proc.stderr
    assert "transliterating 6 character(s)" in proc.stderr and "in LJ001-0010" in proc.stderr
    assert "speaking rate over 30 utterances" in proc.stderr
    assert "letters/s against" not in proc.stderr  # every pair is consistent
    assert (recipe / "dump/raw/tr_no_dev/wav.scp").read_text().count("my corpora") == 24
    assert (recipe / "dump/raw/speaking_rate_outliers.txt").is_file()

    proc = run_recipe(recipe, *args)
    assert proc.returncode != 0
    assert "LJ001-0010: characters outside the recipe's language" in proc.stderr
    assert "(U+041F, -> 'P')" in proc.stderr
    for s in ["tr_no_dev", "dev", "eval1"]:
        assert not (recipe / "dump/raw" / s).exists()  # the previous run's sets would be stale

    proc = run_recipe(recipe, "--stage", "2", "--stop-stage", "2")
    assert proc.returncode != 0 and "run stage 1 first" in proc.stderr and "Traceback" not in proc.stderr
