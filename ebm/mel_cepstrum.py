"""Mel-cepstral analysis of many frames at once: the result of ``pysptk.mcep`` (SPTK), computed as matrix products.

Stage 7 analyses every signal it scores, and ``pysptk.mcep`` costs about as much per frame as WORLD harvest,
because it runs one frame at a time. The analysis (Tokuda et al., 1994) fits the mel-cepstrum whose spectrum
matches the frame's periodogram by Newton-Raphson; each step uses two all-pass frequency warpings (from the
mel-cepstrum to a linear cepstrum, and of the spectral ratio's autocorrelation back to the warped axis), two
FFTs and a small Toeplitz-plus-Hankel system. The warpings are linear maps of fixed size for a given order,
FFT length and alpha, so here they are matrices built once, and every frame still iterating takes its step in
the same batched products. Each frame follows SPTK's own schedule (at least ``miniter`` steps, stopping when the
warped zero lag changes by less than ``threshold`` relative, at most ``maxiter``), so the coefficients equal
SPTK's up to float rounding (the tests compare them frame by frame), and the metrics built on them do not move.
"""

import functools

import numpy as np


def _freqt_matrix(n_in, n_out, alpha):
    """``M`` with ``M @ c`` = SPTK's ``freqt(c, n_in, ., n_out, alpha)``: cepstrum to warped cepstrum."""
    g = np.zeros((n_out + 1, n_in + 1))
    beta = 1.0 - alpha * alpha
    eye = np.eye(n_in + 1)
    for i in range(n_in, -1, -1):
        d = g.copy()
        g[0] = eye[i] + alpha * d[0]
        if n_out >= 1:
            g[1] = beta * d[0] + alpha * d[1]
        for j in range(2, n_out + 1):
            g[j] = d[j - 1] + alpha * (d[j] - g[j - 1])
    return g


def _frqtr_matrix(n_in, n_out, alpha):
    """``M`` with ``M @ r`` = SPTK's ``frqtr(r, n_in, ., n_out, alpha)``: the warping of an autocorrelation."""
    g = np.zeros((n_out + 1, n_in + 1))
    eye = np.eye(n_in + 1)
    for i in range(n_in, -1, -1):
        d = g.copy()
        g[0] = eye[i]
        for j in range(1, n_out + 1):
            g[j] = d[j - 1] + alpha * (d[j] - g[j - 1])
    return g


@functools.lru_cache(maxsize=8)
def _matrices(n_fft, order, alpha):
    half = n_fft // 2
    return (_freqt_matrix(half, order, alpha), _freqt_matrix(order, half, -alpha),
            _frqtr_matrix(half, 2 * order, alpha))


def mcep_frames(frames, order, alpha, miniter=2, maxiter=30, threshold=1e-3, eps=1e-6):
    """``pysptk.mcep(frame, order, alpha, miniter, maxiter, threshold, etype=1, eps=eps)`` for every row of
    ``frames`` (windowed, float64, length a power of 2): ``(len(frames), order + 1)``."""
    frames = np.asarray(frames, dtype=np.float64)
    n_frames, n_fft = frames.shape
    half = n_fft // 2
    to_mel, to_linear, warp_r = _matrices(n_fft, order, float(alpha))
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + eps  # the periodogram, floored by eps (etype 1)
    if not np.all(power > 0):
        raise ValueError("the periodogram has zeros or is not finite; give finite frames and eps > 0")
    cep = np.fft.irfft(np.log(power), n_fft, axis=1)[:, :half + 1]
    cep[:, 0] /= 2.0
    cep[:, half] /= 2.0
    mc = cep @ to_mel.T
    last = cep[:, 0].copy()  # the convergence test's previous value
    al = (-alpha) ** np.arange(order + 1)
    rows = np.arange(order + 1)
    toeplitz_index = np.abs(rows[:, None] - rows[None, :])
    hankel_index = rows[:, None] + rows[None, :]
    even = np.arange(0, 2 * order + 1, 2)
    active = np.arange(n_frames)
    for step in range(1, maxiter + 1):
        log_amp = np.fft.rfft(mc[active] @ to_linear.T, n_fft, axis=1).real
        r = np.fft.irfft(power[active] / np.exp(2.0 * log_amp), n_fft, axis=1)[:, :half + 1] @ warp_r.T
        t = r[:, 0]
        if step >= miniter:
            done = np.abs((t - last[active]) / t) < threshold
            last[active] = t
            active, r, t = active[~done], r[~done], t[~done]
            if active.size == 0:
                break
        b = r[:, :order + 1] - al
        hankel = r.copy()
        hankel[:, even] -= t[:, None]
        toeplitz = r[:, :order + 1].copy()
        toeplitz[:, 2::2] += t[:, None]
        toeplitz[:, 0] *= 2.0
        system = toeplitz[:, toeplitz_index] + hankel[:, hankel_index]
        mc[active] += np.linalg.solve(system, b[:, :, None])[:, :, 0]
    return mc
