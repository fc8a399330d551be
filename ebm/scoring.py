"""What the scoring entry points share: the scores table, the F0 search range, per-system analyses and the
paired bootstrap.

Stage 7 (``ebm.bin.score_wavs``) writes one table per system with :data:`COLUMNS`; ``ebm.bin.make_results``
reads them back with :func:`read_scores`. The F0 range options are named as in ESPnet's ``evaluate_f0.py`` and
checked once here, because an octave error of the tracker decides log-F0 RMSE. :class:`Analyses`,
:func:`compare` and :func:`summary` score several systems on the frames they all voice (``ebm.bin.compare_f0``,
and the results table's diagnostic line).
"""

import logging
import math

import numpy as np

from ebm.audio import read_wav
from ebm.cli import EbmError
from ebm.io import read_scp

COLUMNS = ("mcd", "log_f0_rmse", "vde", "gpe", "ffe", "mel_distance", "mcd_silence_share", "predicted_mos")

#: MEL_SCP of a system whose mel is the reference's own (analysis-synthesis).
REFERENCE_MEL = "reference"


def add_f0_range(p):
    """The pitch tracker's search range, named as in ESPnet's ``evaluate_f0.py``: set it to the speaker's."""
    p.add_argument("--f0min", type=float, default=40.0, help="lowest F0 WORLD harvest may find (Hz)")
    p.add_argument("--f0max", type=float, default=800.0, help="highest F0 WORLD harvest may find (Hz)")


def f0_range(args):
    """``(f0min, f0max)`` checked: octave errors of the tracker decide log-F0 RMSE, so a bad range must not pass."""
    if not 0 < args.f0min < args.f0max:
        raise EbmError(f"the F0 search range --f0min {args.f0min:g} --f0max {args.f0max:g} is empty or negative; "
                       "give 0 < f0min < f0max in Hz (e.g. 40 and 800, or the speaker's range)")
    return args.f0min, args.f0max


def read_scores(path):
    """``{utt: {metric: value}}`` from a table written by ``ebm.bin.score_wavs``."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        return {parts[0]: {c: float(v) for c, v in zip(header[1:], parts[1:])}
                for parts in (line.rstrip("\n").split("\t") for line in f if line.strip())}


def bootstrap(d, n_boot=2000, seed=0):
    """Mean of ``d`` (NaNs dropped) and its 95% bootstrap interval."""
    d = np.asarray([x for x in d if not math.isnan(x)])
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = d[np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


class Analyses:
    """WORLD/mel-cepstral analyses of one wav.scp, each utterance analysed once however often it is compared."""

    def __init__(self, wav_scp, what, n_shift=256, ref_fs=None, f0_range=None):
        self.wavs, self.what, self.n_shift, self.ref_fs = dict(read_scp(wav_scp)), what, n_shift, ref_fs
        self.f0_range = f0_range  # (floor, ceil) Hz; None: ebm.metrics' default
        self.cache, self.fs = {}, {}

    def __getitem__(self, key):
        if key not in self.cache:
            from ebm.metrics import analyse

            if self.ref_fs is None:  # the reference
                wav, fs = read_wav(self.wavs[key], key, f"{self.what} wav", fix="rerun stage 1")
            else:
                wav, fs = read_wav(self.wavs[key], key, f"{self.what} wav", fs=self.ref_fs.fs[key],
                                   fix="vocode it at the reference's rate (stage 7)")
            self.fs[key] = fs
            rng = {} if self.f0_range is None else dict(f0_floor=self.f0_range[0], f0_ceil=self.f0_range[1])
            self.cache[key] = analyse(wav, fs, n_shift=self.n_shift, what=f"{self.what} wav {self.wavs[key]}", **rng)
        return self.cache[key]


def compare(ref, systems, keys=None):
    """Per utterance, :func:`ebm.metrics.common_voiced_f0` of ``systems`` (a list of :class:`Analyses`) against
    ``ref``: ``[(key, n_common, log_f0_rmse (S,), voiced_share (S,))]`` over the utterances all of them have."""
    from ebm.metrics import common_voiced_f0

    if keys is None:
        keys = sorted(set(ref.wavs).intersection(*[s.wavs for s in systems]))
    if not keys:
        raise EbmError(f"no utterance is in every wav.scp compared ({ref.what}, "
                       f"{', '.join(s.what for s in systems)}); check the paths")
    rows = []
    for i, key in enumerate(keys, 1):
        r = common_voiced_f0(ref[key], [s[key] for s in systems])
        rows.append((key, r["n_common"], r["log_f0_rmse"], r["voiced_share"]))
        if i % 10 == 0 or i == len(keys):
            logging.info(f"{i}/{len(keys)} utterances compared on common voiced frames")
    return rows


def summary(rows, n_boot=2000):
    """Means over utterances and, for each system after the first, the paired difference from the first."""
    rmse = np.array([r[2] for r in rows])
    share = np.array([r[3] for r in rows])
    out = {"n_utts": len(rows), "mean_common_frames": float(np.mean([r[1] for r in rows])),
           "log_f0_rmse": [float(np.nanmean(rmse[:, s])) for s in range(rmse.shape[1])],
           "voiced_share": [float(np.mean(share[:, s])) for s in range(share.shape[1])],
           "diff_ci95": [None] + [list(bootstrap(rmse[:, s] - rmse[:, 0], n_boot)) for s in range(1, rmse.shape[1])]}
    return out
