"""The one audio reader and the one mel reader of the package.

Every stage that reads a wav (data preparation, vocoder dumps, vocoding, scoring, diagnostics) goes through
:func:`read_wav`, so a file is accepted or refused by the same checks everywhere: missing, corrupt or unreadable,
more than one channel, no samples, shorter than its WAV header promises (libsndfile reads a truncated copy without
complaint, and the utterance would be trained or scored on a fragment), and, when the caller knows it, a sample
rate other than the recipe's. Each error is one line naming the utterance (when given) and the file, and ends with
the fix the caller passes, since only the caller knows where the file came from (the corpus, stage 1, a vocoder).

Samples are float32 in [-1, 1], as ESPnet's sound loader gives them; a PCM-16 sample is exact in float32, so a
caller that wants the int16 scale multiplies by 32768 without rounding.

:func:`read_mel` is the one way a stage gets the log mel of an utterance: from a decode's ``feats.scp`` or
computed from the reference wav at the recipe's feature settings (ESPnet's LogMelFbank).
"""

import os
from typing import Optional, Tuple

import numpy as np
import soundfile as sf

from ebm.cli import EbmError

# Data-chunk sizes that streaming writers leave when they cannot seek back: the length is unknown, not promised.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFF000)


def header_frames(path) -> Optional[int]:
    """The number of frames a RIFF/WAVE header promises (data-chunk bytes / block size), or None when the file
    is not such a WAV or does not say."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = f.read(size)
                if len(fmt) >= 14:
                    block_align = int.from_bytes(fmt[12:14], "little")
                f.seek(size & 1, 1)
            elif cid == b"data":
                if not block_align or size in _UNKNOWN_SIZES:
                    return None
                return size // block_align
            else:
                f.seek(size + (size & 1), 1)


def read_wav(path, utt: Optional[str] = None, what: str = "wav", fs: Optional[int] = None,
             fix: str = "rerun the step that wrote it") -> Tuple[np.ndarray, int]:
    """``(samples, rate)``: a mono wav as float32 in [-1, 1], or an EbmError naming ``utt`` and ``path``.

    ``what`` names the file's role in errors ("reference wav", "generated wav"); ``fs``, when given, is the rate
    the caller needs; ``fix`` ends every error that is not about the channels, saying where the file is put right
    (the corpus, a stage to rerun).
    """
    path = os.fspath(path)
    at = f"{utt}: " if utt else ""
    if "|" in path and not os.path.isfile(path):
        raise EbmError(f"{at}piped wav.scp entries are not supported ({path!r}); write the audio to files")
    if not os.path.isfile(path):
        raise EbmError(f"{at}missing {what} {path}; restore the file or {fix}")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile says "Format not recognised", "unexpected end of file", ... without the file
        raise EbmError(f"{at}corrupt or unreadable {what} {path} ({e}); re-extract or re-record it, or {fix}") from None
    if audio.shape[1] != 1:
        raise EbmError(f"{at}{what} {path} has {audio.shape[1]} channels; mono is expected, downmix it first")
    if audio.shape[0] == 0:
        raise EbmError(f"{at}{what} {path} contains no samples; replace the file or {fix}")
    promised = header_frames(path)
    if promised is not None and audio.shape[0] < promised:
        raise EbmError(f"{at}{path} is cut short: its header promises {promised} samples "
                       f"({promised / rate:.2f} s), the file holds {audio.shape[0]} ({audio.shape[0] / rate:.2f} s); "
                       f"copy or extract it again, or {fix}")
    if fs is not None and rate != fs:
        raise EbmError(f"{at}{what} {path} is sampled at {rate} Hz but fs={fs} Hz is expected; resample it, or {fix}")
    return audio[:, 0], rate


def read_mel(key: str, settings, reader=None, wav_path=None, fix: str = "rerun stage 1") -> np.ndarray:
    """(T, n_mels) float32 log mel of ``key``: ``reader[key]`` (an opened feats.scp) when given, else computed from
    the wav at ``wav_path`` with ``settings`` (:class:`ebm.vocoder.FeatureSettings`); checked for its shape and for
    non-finite values, which a diverged decode leaves."""
    if reader is not None:
        mel = np.asarray(reader[key], dtype=np.float32)
    else:
        wav, _ = read_wav(wav_path, key, fs=settings.fs, fix=fix)
        mel = settings.logmel(wav)
    if mel.ndim != 2 or mel.shape[1] != settings.n_mels:
        raise EbmError(f"{key}: mel of shape {mel.shape}, expected (frames, {settings.n_mels})")
    if not np.isfinite(mel).all():
        raise EbmError(f"{key}: the mel has non-finite values; its decode failed (see the decode's logs)")
    return mel
