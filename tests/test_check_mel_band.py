"""The stage 2 warning for a mel band that starts above the speaker's fundamental."""

import numpy as np
import soundfile as sf

from conftest import run_module


def voice(path, f0, seconds=0.6, fs=22050):
    """A buzz at ``f0``: the first 20 harmonics with falling amplitude, what harvest tracks as a voice."""
    t = np.arange(int(seconds * fs)) / fs
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 21))
    sf.write(path, 0.3 * x / np.abs(x).max(), fs, subtype="PCM_16")


def scp(tmp_path, f0s):
    lines = []
    for i, f in enumerate(f0s):
        p = tmp_path / f"u{i}.wav"
        voice(p, f)
        lines.append(f"u{i} {p}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    return tmp_path / "wav.scp"


def test_low_voice_under_the_band_is_warned_with_a_fix(tmp_path):
    wav_scp = scp(tmp_path, [95.0, 100.0, 105.0])
    proc = run_module("ebm.bin.check_mel_band", "--wav_scp", wav_scp, "--fmin", 80)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "peaks at 116 Hz" in proc.stderr
    assert "median 100 Hz" in proc.stderr
    assert "Rerun from stage 2 with --fmin 50" in proc.stderr


def test_band_that_covers_the_voice_is_quiet(tmp_path):
    wav_scp = scp(tmp_path, [95.0, 100.0, 105.0])
    proc = run_module("ebm.bin.check_mel_band", "--wav_scp", wav_scp, "--fmin", 40)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr
    assert "peaks at 76 Hz: the band covers the voice" in proc.stderr


def test_wrong_rate_names_the_file(tmp_path):
    wav_scp = scp(tmp_path, [200.0])
    proc = run_module("ebm.bin.check_mel_band", "--wav_scp", wav_scp, "--fs", 16000)
    assert proc.returncode == 1
    assert "u0:" in proc.stderr and "is sampled at 22050 Hz" in proc.stderr
