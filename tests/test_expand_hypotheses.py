"""Stage 5's training list with several free-running hypotheses per text (ebm.bin.expand_hypotheses)."""

import os

import pytest

from ebm.bin.expand_hypotheses import main
from ebm.cli import EbmError
from ebm.io import read_scp

LENGTHS = {"a": 100, "b": 300, "c": 200}  # reference samples: the list goes longest first within a hypothesis


def _inputs(tmp_path, samples=2, drop=None):
    data, shapes = tmp_path / "data", tmp_path / "shapes"
    data.mkdir()
    shapes.mkdir()
    (data / "text").write_text("".join(f"{u} text of {u}\n" for u in LENGTHS))
    (data / "wav.scp").write_text("".join(f"{u} /wavs/{u}.wav\n" for u in LENGTHS))
    (shapes / "text_shape").write_text("".join(f"{u} {len(u) + 9}\n" for u in LENGTHS))
    (shapes / "speech_shape").write_text("".join(f"{u} {n}\n" for u, n in LENGTHS.items()))
    scps = []
    for k in range(samples + 1):
        scp = tmp_path / f"fr{k}.scp"
        scp.write_text("".join(f"{u} /dec{k}/{u}.npy\n" for u in LENGTHS if (k, u) != drop))
        scps.append(scp)
    tf = tmp_path / "tf.scp"
    tf.write_text("".join(f"{u} /tf/{u}.npy\n" for u in LENGTHS))
    args = ["--data_dir", str(data), "--shape_dir", str(shapes), "--tf_scp", str(tf)]
    for scp in scps:
        args += ["--hyp_scp", str(scp)]
    return args


def test_one_entry_per_text_and_hypothesis_ordered_for_unsorted_batches(tmp_path):
    out = tmp_path / "list"
    main(_inputs(tmp_path) + ["--output_dir", str(out)])
    fr = read_scp(out / "fr_feats.scp")
    assert [k for k, _ in fr] == ["b-h0", "c-h0", "a-h0", "b-h1", "c-h1", "a-h1", "b-h2", "c-h2", "a-h2"]
    assert dict(fr)["c-h2"] == "/dec2/c.npy"  # each entry keeps its own hypothesis ...
    text, wav, tf = (dict(read_scp(out / f)) for f in ("text", "wav.scp", "tf_feats.scp"))
    speech, tokens = (dict(read_scp(out / f)) for f in ("speech_shape", "text_shape"))
    for k, _ in fr:  # ... and its text's reference, text, shapes and teacher-forced decode
        u = k.split("-h")[0]
        assert (text[k], wav[k], tf[k]) == (f"text of {u}", f"/wavs/{u}.wav", f"/tf/{u}.npy")
        assert (int(speech[k]), int(tokens[k])) == (LENGTHS[u], len(u) + 9)
    assert sorted(os.listdir(tmp_path)) == sorted(["data", "shapes", "fr0.scp", "fr1.scp", "fr2.scp", "tf.scp",
                                                   "list"])  # no temporary dir left behind


def test_a_sample_missing_an_utterance_names_it_and_the_fix_and_writes_nothing(tmp_path):
    out = tmp_path / "list"
    with pytest.raises(EbmError, match=r"fr2\.scp has no hypothesis for 1 utterances \(e\.g\. c\).*"
                                       r"--baseline_num_samples"):
        main(_inputs(tmp_path, drop=(2, "c")) + ["--output_dir", str(out)])
    assert not out.exists() and not (tmp_path / "list.tmp").exists()


def test_a_rerun_replaces_the_list(tmp_path):
    out = tmp_path / "list"
    main(_inputs(tmp_path) + ["--output_dir", str(out)])
    (out / "stale").write_text("from an older run\n")
    (tmp_path / "again").mkdir()
    main(_inputs(tmp_path / "again", samples=1) + ["--output_dir", str(out)])
    assert not (out / "stale").exists()
    assert len(read_scp(out / "fr_feats.scp")) == 6
