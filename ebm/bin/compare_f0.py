"""Pitch accuracy of several systems on the frames they all voice (a diagnostic beside stage 7's log-F0 RMSE).

Stage 7's log-F0 RMSE of a system counts the frames voiced in it and in the reference. A refinement that voices
more of the reference's voiced frames (a lower VDE) is then scored on more, and harder, frames: its log-F0 RMSE
can rise while its pitch is no worse. This script scores every system on the same frames, those voiced in the
reference and in all systems (:func:`ebm.metrics.common_voiced_f0`), and reports each system's paired
difference from the first (the baseline) with a 95% bootstrap interval over utterances.

Example (egs/<corpus>/tts1, after stage 7)::

    python -m ebm.bin.compare_f0 --ref_wav_scp dump/raw/eval1/wav.scp \\
        --system tacotron2 exp/tts_train_tacotron2_small/decode_free_running/eval1/wav_griffin_lim/wav.scp \\
        --system ebm exp/ebm_train_ebm_score/decode_.../eval1/wav_griffin_lim/wav.scp --output f0_common.tsv
"""

import argparse
import logging
import math

import numpy as np

from ebm.bin.score_wavs import add_f0_range, f0_range, load
from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, write_atomic


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref_wav_scp", required=True, help="the reference recordings (dump/raw/<set>/wav.scp)")
    p.add_argument("--system", nargs=2, action="append", required=True, metavar=("NAME", "WAV_SCP"),
                   help="a system's waveforms; at least two, the first is the baseline of the differences")
    p.add_argument("--output", default=None, help="per-utterance table (TSV), written through a temporary name")
    p.add_argument("--n_shift", type=int, default=256)
    p.add_argument("--n_boot", type=int, default=2000)
    add_f0_range(p)
    return p


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

            wav, fs = load(key, self.wavs[key], self.what)
            if self.ref_fs is not None and fs != self.ref_fs.fs[key]:
                raise EbmError(f"{key}: reference at {self.ref_fs.fs[key]} Hz but {self.wavs[key]} at {fs} Hz; "
                               "vocode at the recipe's fs")
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


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    if len(args.system) < 2:
        raise EbmError("give at least two --system NAME WAV_SCP: a baseline and a system to compare with it")
    rng = f0_range(args)
    ref = Analyses(args.ref_wav_scp, "reference", args.n_shift, f0_range=rng)
    names = [name for name, _ in args.system]
    systems = [Analyses(scp, name, args.n_shift, ref_fs=ref, f0_range=rng) for name, scp in args.system]
    rows = compare(ref, systems)
    if args.output:
        head = "utt\tn_common\t" + "\t".join(f"{n}_log_f0_rmse\t{n}_voiced_share" for n in names) + "\n"
        body = "".join(f"{k}\t{n}\t" + "\t".join(f"{a:.5f}\t{b:.5f}" for a, b in zip(rmse, share)) + "\n"
                       for k, n, rmse, share in rows)
        write_atomic(args.output, head + body)
    s = summary(rows, args.n_boot)
    print(f"{s['n_utts']} utterances; log-F0 RMSE on the frames voiced in the reference and in all "
          f"{len(names)} systems (mean {s['mean_common_frames']:.0f} frames per utterance)")
    for i, name in enumerate(names):
        line = (f"  {name}: log-F0 RMSE {s['log_f0_rmse'][i]:.4f}, voices {s['voiced_share'][i]:.1%} of the "
                f"reference's voiced frames")
        if i > 0:
            m, lo, hi = s["diff_ci95"][i]
            line += f"; minus {names[0]}: {m:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        print(line)


if __name__ == "__main__":
    run(main)
