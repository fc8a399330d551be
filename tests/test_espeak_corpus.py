"""The eSpeak NG corpus generator: the recipes' default corpus must be reproducible, well-formed and safe to rerun."""

import logging
import os
import re
import subprocess
import sys
import wave

import pytest

from ebm.bin import make_espeak_corpus
from ebm.data.espeak_corpus import EspeakCorpusError, make_corpus, read_sentences, synthesize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "egs", "mini_espeak", "tts1", "local", "sentences.txt")
SENTENCES = [
    "The kettle whistled while we argued about the garden fence.",
    "Could you bring the yellow umbrella from the hallway?",
    "Stop shouting, we can all hear you perfectly well!",
    "I'm afraid not.",
]


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="ascii")
    return str(path)


def read_wav(path):
    with wave.open(path, "rb") as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The same sentences built with nj=1 and nj=2 (each build is a separate run of the generator)."""
    root = tmp_path_factory.mktemp("espeak")
    sentences = write_lines(root / "sentences.txt", SENTENCES)
    one = make_corpus(sentences, str(root / "nj1"), nj=1)
    two = make_corpus(sentences, str(root / "nj2"), nj=2)
    return sentences, one, two


def test_deterministic_across_nj_and_order(corpora):
    _, one, two = corpora
    names = sorted(os.listdir(os.path.join(one, "wavs")))
    assert names == [f"ME-000{i}.wav" for i in range(1, len(SENTENCES) + 1)]
    assert names == sorted(os.listdir(os.path.join(two, "wavs")))
    for name in names:
        with open(os.path.join(one, "wavs", name), "rb") as a, open(os.path.join(two, "wavs", name), "rb") as b:
            assert a.read() == b.read(), name
    for name in ("metadata.csv", "README"):
        with open(os.path.join(one, name), "rb") as a, open(os.path.join(two, name), "rb") as b:
            assert a.read() == b.read(), name
    # Each utterance is independent of what was synthesized before it in the same worker.
    reordered = synthesize(list(reversed(SENTENCES)), nj=1)
    for i, samples in enumerate(reversed(reordered), 1):
        with wave.open(os.path.join(one, "wavs", f"ME-000{i}.wav"), "rb") as w:
            assert samples.tobytes() == w.readframes(w.getnframes())


def test_wav_format_and_durations(corpora):
    _, one, _ = corpora
    for i in range(1, len(SENTENCES) + 1):
        channels, width, fs, frames = read_wav(os.path.join(one, "wavs", f"ME-000{i}.wav"))
        assert (channels, width, fs) == (1, 2, 22050)
        assert 0.5 <= frames / fs <= 8.0


def test_metadata_format(corpora):
    _, one, _ = corpora
    with open(os.path.join(one, "metadata.csv"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""
    assert lines[:-1] == [f"ME-000{i}|{s}|{s}" for i, s in enumerate(SENTENCES, 1)]


def test_shipped_sentences_meet_constraints():
    with open(SHIPPED, "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\n") and not raw.endswith(b"\n\n")
    raw.decode("ascii")
    lines = raw.decode("ascii").split("\n")[:-1]
    assert 300 <= len(lines) <= 500
    assert len(set(lines)) == len(lines), "duplicate sentences"
    for lineno, line in enumerate(lines, 1):
        assert re.fullmatch(r"[A-Z][A-Za-z ,'?!.\-]*[.?!]", line), f"line {lineno}: {line!r}"
        assert line == " ".join(line.split()), f"line {lineno}: stray whitespace"
        assert 3 <= len(line.split()) <= 15, f"line {lineno}: {len(line.split())} words"
        assert not any(c.isdigit() for c in line), f"line {lineno}"
    assert sum(line.endswith("?") for line in lines) >= 30
    assert sum("," in line for line in lines) >= 20
    assert read_sentences(SHIPPED) == lines


@pytest.mark.parametrize(
    "content, message",
    [
        (b"First line is fine.\n\nThird line.\n", r":2: empty line"),
        (b"Fine.\nCaf\xc3\xa9 au lait.\n", r":2: non-ASCII"),
        (b"Fine.\nFine again.\nWe have 3 cats.\n", r":3: contains the digit '3'"),
        (b"Pipes | break metadata.\n", r":1: contains '\|'"),
        (b"", r"no sentences"),
    ],
)
def test_invalid_sentences_file(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(EspeakCorpusError, match=message):
        make_corpus(str(path), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out") and not os.path.exists(tmp_path / "out.tmp")


def test_missing_sentences_file(tmp_path):
    with pytest.raises(EspeakCorpusError, match="cannot read sentences file"):
        make_corpus(str(tmp_path / "nope.txt"), str(tmp_path / "out"))


def test_unknown_voice(tmp_path):
    sentences = write_lines(tmp_path / "s.txt", SENTENCES[:1])
    with pytest.raises(EspeakCorpusError, match="unknown eSpeak NG voice 'xx-nonexistent'"):
        make_corpus(sentences, str(tmp_path / "out"), nj=1, voice="xx-nonexistent")
    assert not os.path.exists(tmp_path / "out") and not os.path.exists(tmp_path / "out.tmp")


def test_atomic_rebuild_skip_and_overwrite(tmp_path, caplog):
    sentences = write_lines(tmp_path / "s.txt", SENTENCES[-1:])
    out = tmp_path / "corpus"
    stale = tmp_path / "corpus.tmp"
    (stale / "wavs").mkdir(parents=True)
    (stale / "wavs" / "junk.wav").write_bytes(b"junk")
    make_corpus(sentences, str(out), nj=1)
    assert not stale.exists()
    assert sorted(os.listdir(out / "wavs")) == ["ME-0001.wav"]
    real = (out / "wavs" / "ME-0001.wav").read_bytes()

    (out / "wavs" / "ME-0001.wav").write_bytes(b"marker")  # still "complete": the file exists
    with caplog.at_level(logging.INFO):
        make_corpus(sentences, str(out), nj=1)
    assert "skipping" in caplog.text
    assert (out / "wavs" / "ME-0001.wav").read_bytes() == b"marker"

    make_corpus(sentences, str(out), nj=1, overwrite=True)
    assert (out / "wavs" / "ME-0001.wav").read_bytes() == real

    (out / "wavs" / "ME-0001.wav").unlink()  # incomplete: rebuilt without being asked
    make_corpus(sentences, str(out), nj=1)
    assert (out / "wavs" / "ME-0001.wav").read_bytes() == real

    (out / "notes.txt").write_text("not ours")  # a directory holding foreign files is never deleted
    with pytest.raises(EspeakCorpusError, match="did not write"):
        make_corpus(sentences, str(out), nj=1, overwrite=True)
    assert (out / "notes.txt").exists()


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Fine.\nIt costs 5 pounds.\n")
    assert make_espeak_corpus.main(["--sentences", str(bad), "--out_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and ":2: contains the digit '5'" in err

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    sentences = write_lines(tmp_path / "s.txt", SENTENCES[:1])
    cmd = [sys.executable, "-m", "ebm.bin.make_espeak_corpus", "--sentences", sentences,
           "--out_dir", str(tmp_path / "out"), "--nj", "1", "--voice", "xx-nonexistent"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "ERROR:" in result.stderr and "xx-nonexistent" in result.stderr
    assert "Traceback" not in result.stderr
