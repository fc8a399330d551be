"""Stage 1's audio check: good wavs pass through, every bad one is named, and nothing is written on failure."""

import soundfile as sf

from conftest import run_module, write_tone


def make_scp(tmp_path, entries):
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{u} {p}\n" for u, p in entries))
    return scp


def test_good_wavs_are_referenced_in_place(tmp_path):
    a = write_tone(tmp_path / "a.wav", seconds=0.5)
    b = write_tone(tmp_path / "b.wav", seconds=0.25)
    scp = make_scp(tmp_path, [("u1", a), ("u2", b)])
    out = tmp_path / "out"
    run_module("ebm.bin.format_wav_scp", scp, out, "--fs", 22050, "--audio_dir", tmp_path / "audio", check=True)
    assert (out / "wav.scp").read_text() == f"u1 {a}\nu2 {b}\n"
    assert (out / "utt2num_samples").read_text() == "u1 11025\nu2 5512\n"
    assert not (tmp_path / "audio").exists()


def test_other_rate_is_resampled_or_refused(tmp_path):
    a = write_tone(tmp_path / "a.wav", seconds=1.0, fs=16000)
    scp = make_scp(tmp_path, [("u1", a)])
    out = tmp_path / "out"
    proc = run_module("ebm.bin.format_wav_scp", scp, out, "--fs", 22050, "--audio_dir", tmp_path / "audio",
                      "--on_rate_mismatch", "error")
    assert proc.returncode == 1
    assert "u1" in proc.stderr and "16000 Hz" in proc.stderr and "--on_rate_mismatch resample" in proc.stderr
    assert not out.exists()
    run_module("ebm.bin.format_wav_scp", scp, out, "--fs", 22050, "--audio_dir", tmp_path / "audio", check=True)
    utt, path = (out / "wav.scp").read_text().split()
    info = sf.info(path)
    assert utt == "u1" and info.samplerate == 22050 and abs(info.frames - 22050) <= 1
    assert path.startswith(str(tmp_path / "audio"))


def test_every_bad_file_is_named_and_nothing_written(tmp_path):
    good = write_tone(tmp_path / "good.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    stereo = write_tone(tmp_path / "stereo.wav", channels=2)
    scp = make_scp(tmp_path, [("u1", good), ("u2", tmp_path / "missing.wav"), ("u3", corrupt), ("u4", stereo)])
    out = tmp_path / "out"
    proc = run_module("ebm.bin.format_wav_scp", scp, out, "--fs", 22050, "--audio_dir", tmp_path / "audio")
    assert proc.returncode == 1
    assert "3 of 4 utterances" in proc.stderr
    assert "u2: missing wav" in proc.stderr and "missing.wav" in proc.stderr
    assert "u3: corrupt or unreadable wav" in proc.stderr
    assert "u4:" in proc.stderr and "2 channels" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
