"""LJSpeech-layout corpus -> Kaldi data dirs: the ESPnet split and clear errors on broken corpora."""

import os
import wave

import pytest

from ebm.bin import prepare_ljspeech_layout
from ebm.data.ljspeech import CorpusError, prepare, split_ids

# Real LJSpeech 1.1 lines (public domain), including unbalanced quotes and a raw/normalized difference.
REAL_LINES = [
    (
        "LJ001-0001|Printing, in the only sense with which we are at present concerned, differs from most if not "
        "from all the arts and crafts represented in the Exhibition|Printing, in the only sense with which we are "
        "at present concerned, differs from most if not from all the arts and crafts represented in the Exhibition"
    ),
    "LJ001-0002|in being comparatively modern.|in being comparatively modern.",
    "LJ001-0008|has never been surpassed.|has never been surpassed.",
    (
        "LJ001-0010|Now, as all books not primarily intended as picture-books consist principally of types "
        "composed to form letterpress,|Now, as all books not primarily intended as picture-books consist "
        "principally of types composed to form letterpress,"
    ),
    (
        "LJ002-0026|in the three years between 1813 and 1816,|in the three years between eighteen thirteen and "
        "eighteen sixteen,"
    ),
    'LJ016-0102|"He took the lock himself,|"He took the lock himself,',
]


def write_wav(path, n=220):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(b"\0\0" * n)


def make_corpus(root, lines, wavs=None):
    """An LJSpeech-shaped dir; ``wavs`` (default: every id in ``lines``) get a tiny real wav each."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wavs").mkdir(exist_ok=True)
    (root / "metadata.csv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if wavs is None:
        wavs = [line.split("|")[0] for line in lines if line.strip()]
    for utt in wavs:
        write_wav(root / "wavs" / f"{utt}.wav")
    return root


def thirty_lines():
    extra = [f"LJ003-{i:04d}|Line {i} with 1 number.|Line {i} with one number." for i in range(1, 25)]
    return REAL_LINES + extra  # 30 utterances


def read_kaldi(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split(" ", 1) for line in f]


def all_text(data):
    return {u: t for n in ("tr_no_dev", "dev", "eval1") for u, t in read_kaldi(data / n / "text")}


def prep(corpus, data, **kw):
    args = {"train_set": "tr_no_dev", "dev_set": "dev", "eval_set": "eval1", "num_dev": 3, "num_eval": 4}
    args.update(kw)
    return prepare(str(corpus), str(data), **args)


def test_small_corpus_outputs_are_sorted_and_consistent(tmp_path):
    lines = thirty_lines()
    corpus = make_corpus(tmp_path / "LJSpeech-1.1", lines[::-1])  # metadata order must not matter
    counts = prep(corpus, tmp_path / "data")
    assert counts == {"tr_no_dev": 23, "dev": 3, "eval1": 4}

    all_ids = sorted(line.split("|")[0] for line in lines)
    seen = []
    for name in ("tr_no_dev", "dev", "eval1"):
        d = tmp_path / "data" / name
        assert sorted(os.listdir(d)) == ["spk2utt", "text", "utt2spk", "wav.scp"]
        scp, text, u2s = (read_kaldi(d / f) for f in ("wav.scp", "text", "utt2spk"))
        ids = [u for u, _ in scp]
        assert ids == sorted(ids) and ids == [u for u, _ in text] == [u for u, _ in u2s]
        for utt, path in scp:
            assert os.path.isabs(path) and path == os.path.join(os.path.abspath(corpus), "wavs", f"{utt}.wav")
            assert os.path.isfile(path)
        assert all(spk == "LJ" for _, spk in u2s)
        assert (d / "spk2utt").read_text() == "LJ " + " ".join(ids) + "\n"
        seen += ids
    assert sorted(seen) == all_ids and len(set(seen)) == 30
    assert [u for u, _ in read_kaldi(tmp_path / "data" / "dev" / "wav.scp")] == all_ids[-7:-4]
    assert [u for u, _ in read_kaldi(tmp_path / "data" / "eval1" / "wav.scp")] == all_ids[-4:]

    text = all_text(tmp_path / "data")
    assert text["LJ001-0001"].startswith("Printing, in the only sense with which")
    assert text["LJ002-0026"] == "in the three years between eighteen thirteen and eighteen sixteen,"
    assert text["LJ016-0102"] == '"He took the lock himself,'
    assert not any(n.startswith(".") for n in os.listdir(tmp_path / "data"))  # no temp dirs left


def test_raw_text_field_speaker_and_fallback(tmp_path):
    lines = thirty_lines() + ["LJ050-0001|Raw only, 1 field given.|", "LJ050-0002|Two fields only."]
    corpus = make_corpus(tmp_path / "c", lines)
    prep(corpus, tmp_path / "norm", num_dev=1, num_eval=1, spk="cathy")
    text = all_text(tmp_path / "norm")
    assert text["LJ002-0026"].endswith("eighteen sixteen,")
    assert text["LJ050-0001"] == "Raw only, 1 field given."  # empty normalized field -> raw text
    assert (tmp_path / "norm" / "eval1" / "text").read_text() == "LJ050-0002 Two fields only.\n"
    assert (tmp_path / "norm" / "dev" / "utt2spk").read_text() == "LJ050-0001 cathy\n"

    prep(corpus, tmp_path / "raw", num_dev=1, num_eval=1, text_field="raw")
    text = all_text(tmp_path / "raw")
    assert text["LJ002-0026"] == "in the three years between 1813 and 1816,"


def test_rerun_replaces_sets(tmp_path):
    corpus = make_corpus(tmp_path / "c", thirty_lines())
    prep(corpus, tmp_path / "data")
    (tmp_path / "data" / "dev" / "stale").write_text("x")
    prep(corpus, tmp_path / "data", num_dev=5)
    assert len(read_kaldi(tmp_path / "data" / "dev" / "text")) == 5
    assert not (tmp_path / "data" / "dev" / "stale").exists()


def test_espnet_split_on_13100_ids(tmp_path):
    ids = [f"LJ{c:03d}-{i:04d}" for c in range(1, 51) for i in range(1, 263)]  # 50 * 262 = 13,100
    corpus = tmp_path / "LJSpeech-1.1"
    (corpus / "wavs").mkdir(parents=True)
    for u in ids:
        os.close(os.open(corpus / "wavs" / f"{u}.wav", os.O_CREAT | os.O_WRONLY))  # existence is all prep checks
    lines = [f"{u}|Text of {u}.|Text of {u}." for u in reversed(ids)]
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")

    counts = prep(corpus, tmp_path / "data", num_dev=250, num_eval=250)
    assert counts == {"tr_no_dev": 12600, "dev": 250, "eval1": 250}
    got = {n: [u for u, _ in read_kaldi(tmp_path / "data" / n / "text")] for n in counts}
    assert got["tr_no_dev"] == ids[:12600]
    assert got["dev"] == ids[-500:-250]
    assert got["eval1"] == ids[-250:]

    assert split_ids(ids, 250, 250) == (ids[:12600], ids[-500:-250], ids[-250:])


@pytest.mark.parametrize(
    "lines, wavs, match",
    [
        (["LJ001-0001|ok|ok", "LJ001-0002"], None, r"metadata\.csv:2: .*got 1 field"),
        (["LJ001-0001|ok|ok", "LJ001-0002|a|b|c"], None, r"metadata\.csv:2: .*got 4 field"),
        (["LJ001-0001|ok|ok", "LJ001-0002|ok", "LJ001-0001|again|again"], None, r":3: duplicate .*LJ001-0001"),
        (["LJ001-0001|ok|ok", "LJ001-0002| | "], None, r":2: empty transcript .*LJ001-0002"),
        (["bad id|ok|ok"], None, r":1: utterance id 'bad id'"),
        (["LJ001-0001|a|a", "LJ001-0002|b|b"], ["LJ001-0001"], r"1 wav file\(s\).*LJ001-0002\.wav"),
    ],
)
def test_bad_metadata(tmp_path, lines, wavs, match):
    corpus = make_corpus(tmp_path / "c", lines, wavs=wavs if wavs is not None else [])
    if wavs is None:
        for line in lines:
            write_wav(corpus / "wavs" / f"{line.split('|')[0].strip()}.wav")
    with pytest.raises(CorpusError, match=match):
        prep(corpus, tmp_path / "data", num_dev=1, num_eval=1)
    assert not (tmp_path / "data").exists()  # nothing written for a bad corpus


def test_many_missing_wavs_are_counted(tmp_path):
    lines = thirty_lines()
    corpus = make_corpus(tmp_path / "c", lines, wavs=[])
    with pytest.raises(CorpusError) as e:
        prep(corpus, tmp_path / "data")
    msg = str(e.value)
    assert msg.startswith("30 wav file(s)") and "and 25 more" in msg and msg.count(".wav") == 5
    assert "LJ001-0001.wav" in msg


def test_missing_corpus_pieces(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        prep(tmp_path / "nope", tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"metadata\.csv not found.*LJSpeech-1\.1.*wavs/ID\.wav"):
        prep(tmp_path / "empty", tmp_path / "data")
    (tmp_path / "nowavs").mkdir()
    (tmp_path / "nowavs" / "metadata.csv").write_text("LJ001-0001|a|a\n")
    with pytest.raises(CorpusError, match=r"nowavs/wavs not found"):
        prep(tmp_path / "nowavs", tmp_path / "data")


def test_bad_split_requests(tmp_path):
    corpus = make_corpus(tmp_path / "c", thirty_lines())
    with pytest.raises(CorpusError, match=r"too few utterances.*30 found.*15 \+ 15 = 30"):
        prep(corpus, tmp_path / "data", num_dev=15, num_eval=15)
    with pytest.raises(CorpusError, match="num_dev must be a positive integer"):
        prep(corpus, tmp_path / "data", num_dev=0.1)
    with pytest.raises(CorpusError, match="distinct"):
        prep(corpus, tmp_path / "data", dev_set="eval1")


def test_cli(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "c", thirty_lines())
    argv = [
        "--corpus_dir",
        str(corpus),
        "--data_dir",
        str(tmp_path / "data"),
        "--num_dev",
        "2",
        "--num_eval",
        "2",
        "--spk",
        "spk1",
        "--train_set",
        "train",
    ]
    assert prepare_ljspeech_layout.main(argv) == 0
    assert len(read_kaldi(tmp_path / "data" / "train" / "text")) == 26
    assert (tmp_path / "data" / "eval1" / "spk2utt").read_text().startswith("spk1 ")

    argv[1] = str(tmp_path / "missing")
    assert prepare_ljspeech_layout.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and "missing" in err and "Traceback" not in err
