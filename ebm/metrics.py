"""Objective metrics of stage 7 (reference vs generated speech), with ESPnet's conventions.

One definition each; ``ref`` is the natural recording, ``gen`` the synthesised one, both at the same ``fs``.

Input
    A 1-D float array in [-1, 1], an ``int16`` array, or a path to a mono wav (read as int16, its rate must be
    ``fs``). Everything is analysed on the int16 sample scale, as ESPnet's ``evaluate_mcd.py`` reads its wavs:
    the spectral floor below (``eps``) is absolute, so the scale changes the numbers. A float signal peaking
    above 2 is refused, since int16 values stored as floats would be scaled twice.

Mel-cepstrum (:func:`mel_cepstrum`)
    Frames of ``n_fft`` samples every ``n_shift`` (no padding, except zeros up to one frame for a shorter
    signal), times SPTK's power-normalised Hamming window, then SPTK's mel-cepstral analysis, ``pysptk.mcep(order,
    alpha, etype=1, eps=1e-6)``, for all frames at once (:mod:`ebm.mel_cepstrum`, equal to it up to float
    rounding): ``(T, order + 1)`` coefficients including c0. ``etype=1`` adds ``eps`` to the periodogram, which
    keeps all-zero (digital-silence) frames finite without dithering, so results stay deterministic.
    ``alpha`` defaults to the usual all-pass constant of ``fs`` (:data:`MCEP_ALPHA`).

DTW (:func:`dtw_path`)
    Exact DTW (steps (1,1), (1,0), (0,1), unit weights) with Euclidean frame distance, from (0, 0) to the two
    last frames.

MCD (:func:`mcd`), in dB
    ``mean over the DTW path of 10 / ln(10) * sqrt(2 * sum_d (c_ref[i, d] - c_gen[j, d]) ** 2)``, with the path
    computed on, and the sum taken over, the full mel-cepstra (c0 included). Silence is not removed.

F0 (:func:`f0`)
    WORLD harvest on the int16-scale signal, one value every ``n_shift`` samples (frame k at sample
    ``k * n_shift``), 0 where unvoiced.

F0 errors (:func:`f0_errors`)
    Per signal, F0 and a mel-cepstrum framed on the same centres (``center=True``, as ESPnet's WORLD features
    share the harvest time axis) are trimmed to their common frame count; DTW on the mel-cepstra gives the path
    of ``n_frames`` points (i, j), and the F0 pairs ``(ref[i], gen[j])`` along it define:

    - ``log_f0_rmse``: RMSE of ``ln f0_gen - ln f0_ref`` over points voiced in both (NaN if there are none);
    - ``vde``: fraction of all points whose voiced/unvoiced decisions differ;
    - ``gpe``: among points voiced in both, the fraction with ``|f0_gen / f0_ref - 1| > 0.2`` (NaN if none);
    - ``ffe``: (gross pitch error points + voicing decision error points) / all points.

    DTW may pair digital silence inserted in ``gen`` with silence of ``ref`` (and the voiced frames it replaced
    with one neighbour), so a dropped stretch next to a pause costs less VDE than its length suggests.

Silence (:func:`silent_frames`) and the silence share of MCD (``mcd_silence_share``)
    A frame of the reference (MCD framing) is silent when its energy (sum of squared samples) is more than
    :data:`SILENCE_DB` dB below the utterance's loudest frame; digital silence always is. The share is the part of
    the MCD sum along the DTW path taken at points whose reference frame is silent (0 when MCD is 0). MCD does not
    remove silence, so a vocoder's or a model's noise floor in pauses counts as much as speech; the share says how
    much of a system's MCD, and of a difference between systems, comes from pauses.

Mel distance (:func:`mel_distance`), in dB
    The vocoder-free distance between two log mels as the TTS models output them (ESPnet's LogMelFbank: log10 of
    the mel amplitude): DTW with Euclidean frame distance, then the mean over the path of the RMS over mel bins of
    ``20 * (mel_ref - mel_gen)``. An acoustic model is judged on it before any vocoder touches its output; it is
    0 for the reference's own mel.

Predicted MOS (:func:`predicted_mos`)
    DistillMOS (Stahl and Gamper, 2025; PyPI ``distillmos``, weights inside the wheel): a CNN-Transformer
    distilled from an XLS-R speech quality model, 1 (bad) to 5 (excellent). The signal is resampled to its rate
    (:data:`MOS_FS`) and scored as the package's own inference does: zero-padded to 7.68 s, longer signals
    averaged over overlapping 7.68 s windows, peak-normalised (the level does not matter). It listens to the
    audio, so unlike MCD it cannot be lowered by audio that is closer on average but sounds worse.
"""

import os
from typing import Dict, Optional, Tuple

import numpy as np
import pysptk
import pyworld

from ebm.alignment import dtw_path
from ebm.audio import read_wav
from ebm.cli import EbmError
from ebm.mel_cepstrum import mcep_frames

#: All-pass constant of the mel-cepstrum per sample rate (approximates the mel scale at that rate).
MCEP_ALPHA = {16000: 0.41, 22050: 0.45, 24000: 0.466, 44100: 0.544, 48000: 0.554}

#: Relative F0 deviation above which a voiced-in-both frame is a gross pitch error.
GPE_THRESHOLD = 0.2

#: A reference frame whose energy is more than this many dB below the utterance's loudest frame is silent.
SILENCE_DB = 40.0

#: DistillMOS' sample rate.
MOS_FS = 16000

_INT16_SCALE = 32768.0


def mcep_alpha(fs: int) -> float:
    """The all-pass constant for ``fs``; an unlisted rate is an error rather than a silently warped scale."""
    if fs not in MCEP_ALPHA:
        supported = ", ".join(str(r) for r in sorted(MCEP_ALPHA))
        raise EbmError(f"no mel-cepstrum all-pass constant for fs={fs} Hz (supported: {supported}); "
                       "resample the wavs to one of these rates or pass alpha explicitly")
    return MCEP_ALPHA[fs]


def _signal(wav, fs: int, what: str = "wav") -> np.ndarray:
    """A 1-D float64 array on the int16 scale; ``what`` names the signal in errors."""
    if isinstance(wav, (str, os.PathLike)):
        path = os.fspath(wav)
        wav, _ = read_wav(path, what=what, fs=fs)
        what = f"{what} {path}"
    x = np.asarray(wav)
    if x.ndim != 1:
        raise EbmError(f"{what} has shape {x.shape}; metrics need a mono 1-D signal")
    if x.size == 0:
        raise EbmError(f"{what} is empty (0 samples); check that synthesis wrote audio for it")
    if x.dtype == np.int16:
        return x.astype(np.float64)
    if not np.issubdtype(x.dtype, np.floating):
        raise EbmError(f"{what} has dtype {x.dtype}; give int16 samples or floats in [-1, 1]")
    if not np.all(np.isfinite(x)):
        raise EbmError(f"{what} contains NaN or inf samples; the generator diverged for it")
    peak = float(np.max(np.abs(x)))
    if peak > 2.0:
        raise EbmError(f"{what} is float with peak {peak:.1f}; floats must be in [-1, 1] "
                       "(divide by 32768, or pass an int16 array)")
    return x.astype(np.float64) * _INT16_SCALE


def _check_fs(fs) -> int:
    if isinstance(fs, bool) or not isinstance(fs, (int, float, np.number)) or fs <= 0 or int(fs) != fs:
        raise EbmError(f"fs={fs!r} is not a sample rate; pass a positive integer in Hz")
    return int(fs)


def _mcep(x: np.ndarray, fs: int, n_fft: int, n_shift: int, order: int, alpha: Optional[float],
          center: bool) -> np.ndarray:
    if alpha is None:
        alpha = mcep_alpha(fs)
    if center:
        x = np.pad(x, (n_fft // 2, n_fft // 2))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::n_shift]
    return mcep_frames(frames * pysptk.hamming(n_fft), order, alpha, eps=1e-6)


def mel_cepstrum(wav, fs: int, n_fft: int = 1024, n_shift: int = 256, order: int = 34,
                 alpha: Optional[float] = None, center: bool = False) -> np.ndarray:
    """``(T, order + 1)`` mel-cepstra, c0 included (see the module docstring).

    ``center=True`` pads ``n_fft // 2`` zeros at both ends so that frame k is centred on sample ``k * n_shift``,
    the time axis of :func:`f0`; MCD keeps ESPnet's unpadded framing.
    """
    fs = _check_fs(fs)
    return _mcep(_signal(wav, fs), fs, n_fft, n_shift, order, alpha, center)


def _mcd_path(ref_mcep: np.ndarray, gen_mcep: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The reference frame of each DTW path point and the point's distortion in dB (MCD is their mean)."""
    i, j = dtw_path(ref_mcep, gen_mcep)
    diff2 = np.sum((ref_mcep[i] - gen_mcep[j]) ** 2, axis=1)
    return i, 10.0 / np.log(10.0) * np.sqrt(2.0 * diff2)


def _mcd(ref_mcep: np.ndarray, gen_mcep: np.ndarray) -> float:
    return float(np.mean(_mcd_path(ref_mcep, gen_mcep)[1]))


def _silent(x: np.ndarray, n_fft: int, n_shift: int, threshold_db: float) -> np.ndarray:
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    starts = np.arange(0, len(x) - n_fft + 1, n_shift)
    cum = np.concatenate([[0.0], np.cumsum(x * x)])
    energy = cum[starts + n_fft] - cum[starts]
    peak = energy.max()
    if peak <= 0:
        return np.ones(len(starts), dtype=bool)  # digital silence throughout
    return energy < peak * 10.0 ** (-threshold_db / 10.0)


def silent_frames(wav, fs: int, n_fft: int = 1024, n_shift: int = 256, threshold_db: float = SILENCE_DB) -> np.ndarray:
    """Per frame of the MCD framing, whether it is silent: energy more than ``threshold_db`` below the loudest."""
    fs = _check_fs(fs)
    return _silent(_signal(wav, fs), n_fft, n_shift, threshold_db)


def mcd_silence_share(ref_mcep: np.ndarray, ref_silent: np.ndarray, gen_mcep: np.ndarray) -> float:
    """The share of the MCD sum taken at path points whose reference frame is silent (0 when MCD is 0)."""
    if len(ref_silent) != len(ref_mcep):
        raise EbmError(f"{len(ref_silent)} silence flags for {len(ref_mcep)} reference frames; frame both alike")
    return _silence_share(*_mcd_path(ref_mcep, gen_mcep), ref_silent)


def _silence_share(i: np.ndarray, dist: np.ndarray, ref_silent: np.ndarray) -> float:
    total = float(dist.sum())
    return float(dist[ref_silent[i]].sum()) / total if total > 0 else 0.0


def mel_distance(ref_mel: np.ndarray, gen_mel: np.ndarray) -> float:
    """Mean over the DTW path of the RMS over mel bins of ``20 * (ref - gen)``, in dB, for two (T, n_mels) log10
    mel amplitudes (see the module docstring)."""
    ref_mel, gen_mel = np.asarray(ref_mel, dtype=np.float64), np.asarray(gen_mel, dtype=np.float64)
    for what, m in (("reference", ref_mel), ("generated", gen_mel)):
        if m.ndim != 2 or len(m) == 0:
            raise EbmError(f"the {what} mel has shape {m.shape}; give (frames, n_mels) with at least one frame")
        if not np.all(np.isfinite(m)):
            raise EbmError(f"the {what} mel has non-finite values; its decode failed")
    i, j = dtw_path(ref_mel, gen_mel)
    return float(np.mean(20.0 * np.sqrt(np.mean((ref_mel[i] - gen_mel[j]) ** 2, axis=1))))


_MOS_MODEL = None


def _mos_model():
    """DistillMOS, loaded once per process (its constructor reads the weights and prints to stdout)."""
    global _MOS_MODEL
    if _MOS_MODEL is None:
        import contextlib
        import io

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                import distillmos
        except ImportError as e:
            raise EbmError(f"predicted MOS needs the package distillmos ({e}); run tools/install.sh") from None
        with contextlib.redirect_stdout(io.StringIO()):
            _MOS_MODEL = distillmos.ConvTransformerSQAModel().eval()
    return _MOS_MODEL


def predicted_mos(wav, fs: int) -> float:
    """DistillMOS' predicted MOS (1-5) of one signal (see the module docstring); the model is loaded once."""
    import torch
    import torchaudio

    fs = _check_fs(fs)
    x = torch.from_numpy(_signal(wav, fs) / _INT16_SCALE).float()
    if fs != MOS_FS:
        x = torchaudio.functional.resample(x, fs, MOS_FS)
    model = _mos_model()
    with torch.no_grad():
        return float(model(x[None])[0])


def mcd(ref_wav, gen_wav, fs: int, n_fft: int = 1024, n_shift: int = 256, order: int = 34,
        alpha: Optional[float] = None) -> float:
    """Mel-cepstral distortion in dB after DTW (see the module docstring)."""
    fs = _check_fs(fs)
    ref = _mcep(_signal(ref_wav, fs, "reference wav"), fs, n_fft, n_shift, order, alpha, False)
    gen = _mcep(_signal(gen_wav, fs, "generated wav"), fs, n_fft, n_shift, order, alpha, False)
    return _mcd(ref, gen)


def _f0(x: np.ndarray, fs: int, n_shift: int, f0_floor: float, f0_ceil: float) -> np.ndarray:
    f0_, _ = pyworld.harvest(x, fs, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=1000.0 * n_shift / fs)
    return f0_


def f0(wav, fs: int, n_shift: int = 256, f0_floor: float = 40.0, f0_ceil: float = 800.0) -> np.ndarray:
    """F0 in Hz by WORLD harvest, one value per ``n_shift`` samples; 0 = unvoiced."""
    fs = _check_fs(fs)
    return _f0(_signal(wav, fs), fs, n_shift, f0_floor, f0_ceil)


def _f0_errors(ref_mcep, ref_f0, gen_mcep, gen_f0) -> Dict[str, float]:
    n = min(len(ref_mcep), len(ref_f0))
    ref_mcep, ref_f0 = ref_mcep[:n], ref_f0[:n]
    n = min(len(gen_mcep), len(gen_f0))
    gen_mcep, gen_f0 = gen_mcep[:n], gen_f0[:n]
    i, j = dtw_path(ref_mcep, gen_mcep)
    r, g = ref_f0[i], gen_f0[j]
    ref_voiced, gen_voiced = r > 0, g > 0
    both = ref_voiced & gen_voiced
    voicing_errors = int(np.sum(ref_voiced != gen_voiced))
    if both.any():
        log_diff = np.log(g[both]) - np.log(r[both])
        log_f0_rmse = float(np.sqrt(np.mean(log_diff ** 2)))
        gross = int(np.sum(np.abs(g[both] / r[both] - 1.0) > GPE_THRESHOLD))
        gpe = gross / int(both.sum())
    else:
        log_f0_rmse, gross, gpe = float("nan"), 0, float("nan")
    n_frames = len(i)
    return {"log_f0_rmse": log_f0_rmse, "vde": voicing_errors / n_frames, "gpe": gpe,
            "ffe": (gross + voicing_errors) / n_frames, "n_frames": n_frames}


def _f0_features(x, fs, n_fft, n_shift, order, alpha, f0_floor, f0_ceil):
    return _mcep(x, fs, n_fft, n_shift, order, alpha, True), _f0(x, fs, n_shift, f0_floor, f0_ceil)


def f0_errors(ref_wav, gen_wav, fs: int, n_shift: int = 256, n_fft: int = 1024, order: int = 34,
              alpha: Optional[float] = None, f0_floor: float = 40.0, f0_ceil: float = 800.0) -> Dict[str, float]:
    """``{log_f0_rmse, vde, gpe, ffe, n_frames}`` along the mel-cepstral DTW path (see the module docstring)."""
    fs = _check_fs(fs)
    if alpha is None:
        alpha = mcep_alpha(fs)  # fail on the rate before the slow harvest
    ref = _signal(ref_wav, fs, "reference wav")
    gen = _signal(gen_wav, fs, "generated wav")
    args = (fs, n_fft, n_shift, order, alpha, f0_floor, f0_ceil)
    return _f0_errors(*_f0_features(ref, *args), *_f0_features(gen, *args))


def analyse(wav, fs: int, n_shift: int = 256, n_fft: int = 1024, order: int = 34, alpha: Optional[float] = None,
            f0_floor: float = 40.0, f0_ceil: float = 800.0, what: str = "wav") -> Dict[str, np.ndarray]:
    """What the metrics need of one signal: ``{mcep (MCD framing), mcep_centered, f0, silent (MCD framing)}``.

    Analyse a reference once and score many systems against it (:func:`score_analyses`). The unpadded
    mel-cepstrum is a slice of the centred one whenever ``n_fft / 2`` is a whole number of hops (1024 / 256), so
    the slow per-frame ``mcep`` runs once per signal.
    """
    fs = _check_fs(fs)
    if alpha is None:
        alpha = mcep_alpha(fs)
    x = _signal(wav, fs, what)
    centered = _mcep(x, fs, n_fft, n_shift, order, alpha, True)
    offset, rem = divmod(n_fft // 2, n_shift)
    if rem == 0 and len(x) >= n_fft:
        plain = centered[offset: offset + 1 + (len(x) - n_fft) // n_shift]
    else:
        plain = _mcep(x, fs, n_fft, n_shift, order, alpha, False)
    return {"mcep": plain, "mcep_centered": centered, "f0": _f0(x, fs, n_shift, f0_floor, f0_ceil),
            "silent": _silent(x, n_fft, n_shift, SILENCE_DB)}


def score_analyses(ref: Dict[str, np.ndarray], gen: Dict[str, np.ndarray]) -> Dict[str, float]:
    """The signal-pair metrics from two :func:`analyse` results: ``{mcd, mcd_silence_share, log_f0_rmse, vde, gpe,
    ffe, n_frames}``."""
    i, dist = _mcd_path(ref["mcep"], gen["mcep"])
    scores = {"mcd": float(np.mean(dist)), "mcd_silence_share": _silence_share(i, dist, ref["silent"])}
    scores.update(_f0_errors(ref["mcep_centered"], ref["f0"], gen["mcep_centered"], gen["f0"]))
    return scores


def f0_on_ref_frames(ref: Dict[str, np.ndarray], gen: Dict[str, np.ndarray]) -> np.ndarray:
    """``gen``'s F0 carried onto ``ref``'s frames along the F0 errors' DTW path (the first point of each ref frame).

    Two systems are then comparable frame by frame on the same reference frames (:func:`common_voiced_f0`).
    """
    n = min(len(ref["mcep_centered"]), len(ref["f0"]))
    m = min(len(gen["mcep_centered"]), len(gen["f0"]))
    i, j = dtw_path(ref["mcep_centered"][:n], gen["mcep_centered"][:m])
    first = np.ones(len(i), dtype=bool)
    first[1:] = i[1:] != i[:-1]
    out = np.zeros(n)
    out[i[first]] = gen["f0"][:m][j[first]]
    return out


def f0_track_pair(ref: Dict[str, np.ndarray], gen: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """``(ref_f0, gen_f0)`` on the reference's frames that have both F0 and a mel-cepstrum: what
    :func:`common_voiced_f0_tracks` compares, and what stage 7's scoring stores per system."""
    track = f0_on_ref_frames(ref, gen)
    return ref["f0"][:len(track)], track


def common_voiced_f0(ref: Dict[str, np.ndarray], gens) -> Dict[str, np.ndarray]:
    """Pitch accuracy of several systems (:func:`analyse` results) on one set of frames: those voiced in the
    reference and in every system (:func:`common_voiced_f0_tracks` of their :func:`f0_track_pair`)."""
    pairs = [f0_track_pair(ref, g) for g in gens]
    return common_voiced_f0_tracks(pairs[0][0], [g for _, g in pairs])


def common_voiced_f0_tracks(ref_f0: np.ndarray, tracks) -> Dict[str, np.ndarray]:
    """Pitch accuracy of several systems on one set of frames: those voiced in the reference and in every system.

    ``log_f0_rmse`` counts the frames voiced in both signals, so a system that voices more of the reference's voiced
    frames is scored on more (and harder) frames than one that leaves them unvoiced. Restricting every system to
    the frames all of them voice separates pitch accuracy from voicing. ``ref_f0``: the reference's F0 on its
    frames that have both F0 and a mel-cepstrum; ``tracks``: each system's F0 carried onto those frames
    (:func:`f0_on_ref_frames`). Returns ``{log_f0_rmse: (S,), voiced_share: (S,), n_common}``: RMSE of
    ``ln f0_gen - ln f0_ref`` over the common frames (NaN if none), and the share of the reference's voiced frames
    each system voices.
    """
    ref_f0 = np.asarray(ref_f0, dtype=np.float64)
    tracks = [np.asarray(t, dtype=np.float64) for t in tracks]
    for t in tracks:
        if len(t) != len(ref_f0):
            raise EbmError(f"an F0 track of {len(t)} frames against a reference of {len(ref_f0)}: the tracks must "
                           "be on the reference's frames (f0_on_ref_frames)")
    ref_voiced = ref_f0 > 0
    common = ref_voiced.copy()
    for t in tracks:
        common &= t > 0
    rmse = [float(np.sqrt(np.mean((np.log(t[common]) - np.log(ref_f0[common])) ** 2))) if common.any()
            else float("nan") for t in tracks]
    share = [float(np.sum(ref_voiced & (t > 0)) / max(int(ref_voiced.sum()), 1)) for t in tracks]
    return {"log_f0_rmse": np.array(rmse), "voiced_share": np.array(share), "n_common": int(common.sum())}


def score_pair(ref_wav, gen_wav, fs: int, n_shift: int = 256, n_fft: int = 1024, order: int = 34,
               alpha: Optional[float] = None, f0_floor: float = 40.0,
               f0_ceil: float = 800.0) -> Dict[str, float]:
    """The signal-pair metrics of one utterance (:func:`score_analyses`); reads each signal once."""
    opts = dict(fs=fs, n_shift=n_shift, n_fft=n_fft, order=order, alpha=alpha, f0_floor=f0_floor, f0_ceil=f0_ceil)
    return score_analyses(analyse(ref_wav, what="reference wav", **opts),
                          analyse(gen_wav, what="generated wav", **opts))
