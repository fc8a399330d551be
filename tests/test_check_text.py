"""Transcript checks with ESPnet's own cleaner and tokenizer."""

from conftest import run_module


def test_clean_text_passes(tmp_path):
    text = tmp_path / "text"
    text.write_text("u1 Hello, world!\nu2 I have three dogs; do you?\nu3 It cost 5 dollars.\n")
    proc = run_module("ebm.bin.check_text", text)
    assert proc.returncode == 0, proc.stderr


def test_bad_transcripts_are_all_named(tmp_path):
    text = tmp_path / "text"
    text.write_text("u1 fine text\nu2 \nu3 price # tag\nu4 \u2603\n")
    proc = run_module("ebm.bin.check_text", text)
    assert proc.returncode == 1
    assert "3 bad transcripts" in proc.stderr
    assert "u2: empty transcript" in proc.stderr
    assert "u3: the tacotron cleaner cannot handle '#'" in proc.stderr
    assert "u4: the cleaner would silently drop '\u2603' (U+2603, dropped)" in proc.stderr
    assert "u1:" not in proc.stderr


def test_tokens_missing_from_the_list(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{t}\n" for t in ["<blank>", "<unk>", "A", "B", "<space>", "<sos/eos>"]))
    text = tmp_path / "text"
    text.write_text("u1 ab ba\nu2 abc\n")
    proc = run_module("ebm.bin.check_text", "--token_list", tokens, text)
    assert proc.returncode == 1
    assert "u2: tokens ['C'] are not in the token list" in proc.stderr
    assert "u1:" not in proc.stderr
