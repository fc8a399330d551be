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

from ebm.bin.score_wavs import load
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
    return p


def bootstrap(d, n_boot, seed=0):
    """Mean of ``d`` and its 95% bootstrap interval."""
    d = np.asarray([x for x in d if not math.isnan(x)])
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = d[np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    if len(args.system) < 2:
        raise EbmError("give at least two --system NAME WAV_SCP: a baseline and a system to compare with it")
    from ebm.metrics import analyse, common_voiced_f0

    refs = dict(read_scp(args.ref_wav_scp))
    names = [name for name, _ in args.system]
    gens = [dict(read_scp(scp)) for _, scp in args.system]
    keys = sorted(set(refs).intersection(*gens))
    if not keys:
        raise EbmError(f"no utterance is in {args.ref_wav_scp} and in every system's wav.scp; check the paths")
    rows = []
    for i, key in enumerate(keys, 1):
        ref, fs = load(key, refs[key], "reference")
        ref_a = analyse(ref, fs, n_shift=args.n_shift, what="reference wav")
        gen_a = []
        for name, g in zip(names, gens):
            wav, fs_gen = load(key, g[key], f"{name}")
            if fs_gen != fs:
                raise EbmError(f"{key}: reference at {fs} Hz but {g[key]} at {fs_gen} Hz; vocode at the recipe's fs")
            gen_a.append(analyse(wav, fs, n_shift=args.n_shift, what=f"{name} wav {g[key]}"))
        r = common_voiced_f0(ref_a, gen_a)
        rows.append((key, r["n_common"], r["log_f0_rmse"], r["voiced_share"]))
        if i % 10 == 0 or i == len(keys):
            logging.info(f"{i}/{len(keys)} utterances analysed")
    if args.output:
        head = "utt\tn_common\t" + "\t".join(f"{n}_log_f0_rmse\t{n}_voiced_share" for n in names) + "\n"
        body = "".join(f"{k}\t{n}\t" + "\t".join(f"{a:.5f}\t{b:.5f}" for a, b in zip(rmse, share)) + "\n"
                       for k, n, rmse, share in rows)
        write_atomic(args.output, head + body)
    rmse = np.array([r[2] for r in rows])
    share = np.array([r[3] for r in rows])
    print(f"{len(rows)} utterances; log-F0 RMSE on the frames voiced in the reference and in all "
          f"{len(names)} systems (mean {np.mean([r[1] for r in rows]):.0f} frames per utterance)")
    for s, name in enumerate(names):
        line = f"  {name}: log-F0 RMSE {np.nanmean(rmse[:, s]):.4f}, voices {np.mean(share[:, s]):.1%} of the " \
               f"reference's voiced frames"
        if s > 0:
            m, lo, hi = bootstrap(rmse[:, s] - rmse[:, 0], args.n_boot)
            line += f"; minus {names[0]}: {m:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        print(line)


if __name__ == "__main__":
    run(main)
