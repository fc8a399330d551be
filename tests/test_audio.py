"""The one audio reader and mel reader (ebm.audio): every check, each error naming the utterance, file and fix."""

import numpy as np
import pytest
import soundfile as sf

from ebm.audio import read_mel, read_wav
from ebm.cli import EbmError
from ebm.vocoder import FeatureSettings

from conftest import write_tone


def test_reads_pcm16_mono_as_exact_float32(tmp_path):
    x = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    wav, fs = read_wav(tmp_path / "a.wav", "u1", fs=16000)
    assert fs == 16000 and wav.dtype == np.float32 and wav.ndim == 1
    assert np.array_equal(wav.astype(np.float64) * 32768, x)  # int16 scale without rounding


@pytest.mark.parametrize("case, message", [
    ("missing", r"u1: missing reference wav .*missing\.wav; restore the file or FIX"),
    ("corrupt", r"u1: corrupt or unreadable reference wav .*corrupt\.wav \(.*\); re-extract or re-record it, or FIX"),
    ("stereo", r"u1: reference wav .*stereo\.wav has 2 channels; mono is expected, downmix it first"),
    ("empty", r"u1: reference wav .*empty\.wav contains no samples; replace the file or FIX"),
    ("short", r"u1: .*short\.wav is cut short: its header promises 6615 samples \(0\.30 s\), the file holds "),
    ("rate", r"u1: reference wav .*rate\.wav is sampled at 22050 Hz but fs=16000 Hz is expected; resample it, or FIX"),
    ("piped", r"u1: piped wav.scp entries are not supported"),
])
def test_bad_files_are_refused_naming_utterance_file_and_fix(tmp_path, case, message):
    path = tmp_path / f"{case}.wav"
    if case == "corrupt":
        path.write_bytes(b"RIFF not really a wav")
    elif case == "stereo":
        write_tone(path, channels=2)
    elif case == "empty":
        sf.write(path, np.zeros(0, dtype=np.int16), 22050, subtype="PCM_16")
    elif case == "short":
        write_tone(path)
        path.write_bytes(path.read_bytes()[:2000])  # the header still promises 0.3 s
    elif case == "rate":
        write_tone(path)
    elif case == "piped":
        path = "sox in.flac -t wav - |"
    with pytest.raises(EbmError, match=message):
        read_wav(path, "u1", "reference wav", fs=16000, fix="FIX")


def test_read_mel_from_a_wav_and_from_a_reader(tmp_path):
    settings = FeatureSettings(fs=22050)
    write_tone(tmp_path / "a.wav")
    mel = read_mel("u1", settings, wav_path=str(tmp_path / "a.wav"))
    assert mel.shape == (6615 // 256 + 1, 80) and mel.dtype == np.float32
    assert np.array_equal(read_mel("u1", settings, reader={"u1": mel.astype(np.float64)}), mel)
    with pytest.raises(EbmError, match=r"u1: mel of shape \(3, 40\), expected \(frames, 80\)"):
        read_mel("u1", settings, reader={"u1": np.zeros((3, 40))})
    with pytest.raises(EbmError, match="u1: the mel has non-finite values"):
        read_mel("u1", settings, reader={"u1": np.full((3, 80), np.nan)})
    with pytest.raises(EbmError, match=r"u1: wav .*a\.wav is sampled at 22050 Hz but fs=16000 Hz.*rerun stage 1"):
        read_mel("u1", FeatureSettings(fs=16000), wav_path=str(tmp_path / "a.wav"))
