"""ebm.mel_cepstrum computes for many frames at once what pysptk.mcep computes one frame at a time: compared
coefficient by coefficient on voiced, noisy and silent frames, at several orders, FFT lengths, all-pass constants
and iteration limits (frames stop iterating at different steps, so each frame's own stopping rule is checked)."""

import numpy as np
import pysptk
import pytest

from ebm.mel_cepstrum import mcep_frames


def frames_of(n_fft, n=24, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n_fft * (n // 2 + 1))
    f0 = 110 + 40 * np.sin(t / 3000.0)
    voiced = sum(np.sin(2 * np.pi * np.cumsum(f0 * k) / 22050) / k for k in range(1, 30)) * 8000
    signal = voiced + rng.normal(0, 300, t.size)
    signal[: n_fft] = 0.0  # digital silence, as in pauses of vocoded speech
    signal[n_fft: 2 * n_fft] = rng.normal(0, 3000, n_fft)  # a noise burst
    frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft)[:: n_fft // 2][:n]
    return np.ascontiguousarray(frames * pysptk.hamming(n_fft))


@pytest.mark.parametrize("n_fft,order,alpha,maxiter", [(1024, 34, 0.45, 30), (512, 24, 0.41, 30),
                                                         (1024, 34, 0.45, 1), (256, 12, 0.35, 3)])
def test_equals_pysptk(n_fft, order, alpha, maxiter):
    frames = frames_of(n_fft)
    want = np.stack([pysptk.mcep(f, order, alpha, maxiter=maxiter, etype=1, eps=1e-6) for f in frames])
    got = mcep_frames(frames, order, alpha, maxiter=maxiter, eps=1e-6)
    assert got.shape == (len(frames), order + 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_stopping_rule_is_per_frame():
    frames = frames_of(1024)
    loose = mcep_frames(frames, 34, 0.45, threshold=1e-1)
    want = np.stack([pysptk.mcep(f, 34, 0.45, threshold=1e-1, etype=1, eps=1e-6) for f in frames])
    np.testing.assert_allclose(loose, want, rtol=0, atol=1e-9)
    # a looser threshold stops some frames earlier: the test above would see a frame that ran on
    assert np.abs(loose - mcep_frames(frames, 34, 0.45)).max() > 1e-6


def test_zero_periodogram_is_refused():
    with pytest.raises(ValueError, match="eps > 0"):
        mcep_frames(np.zeros((2, 256)), 12, 0.35, eps=0.0)
