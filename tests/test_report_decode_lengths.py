"""Stage 4's length report: every decode of a set in one call (the tokenizer is built once), each its own report."""

from conftest import run_module


def _decode(d, shapes, rtf=True):
    (d / "speech_shape").mkdir(parents=True)
    (d / "speech_shape/speech_shape").write_text("".join(f"{k} {n},80\n" for k, n in shapes.items()))
    if rtf:
        (d / "rtf").write_text("".join(f"{k} 0.5 {n}\n" for k, n in shapes.items()))


def test_each_decode_gets_its_own_report(tmp_path):
    (tmp_path / "text").write_text("a hello there\nb ok\nc a longer sentence\n")
    # reference frames: samples // 256 + 1 = 100 for each
    (tmp_path / "utt2num_samples").write_text("a 25400\nb 25400\nc 25400\n")
    (tmp_path / "config.yaml").write_text("token_type: char\ncleaner: null\ng2p: null\n")
    tf, fr = tmp_path / "tf", tmp_path / "fr"
    _decode(tf, {"a": 100, "b": 100, "c": 100})
    # "ok" is 2 characters: maximum length (2 + 1) x 10 = 30 frames; c is 50% short; a is one missing
    _decode(fr, {"b": 30, "c": 50}, rtf=False)
    proc = run_module("ebm.bin.report_decode_lengths", "--text", tmp_path / "text",
                      "--utt2num_samples", tmp_path / "utt2num_samples", "--n_shift", 256, "--fs", 22050,
                      "--decode", "teacher_forced", tf, "--decode", "free_running", fr,
                      "--train_config", tmp_path / "config.yaml", "--maxlenratio", 10, check=True)
    assert (tf / "length_report.txt").read_text() == ""  # teacher-forced lengths follow the reference
    report = (fr / "length_report.txt").read_text().splitlines()
    assert report == ["a missing: no decode", "b max_length hyp=30 ref=100 ratio=0.30",
                      "c too_short hyp=50 ref=100 ratio=0.50"]
    assert "teacher_forced: 3/3 decodes" in proc.stderr and "free_running: 0/2 decodes" in proc.stderr
    assert "1 texts not decoded" in proc.stderr and "teacher_forced: decoding 0.500 s per utterance" in proc.stderr
