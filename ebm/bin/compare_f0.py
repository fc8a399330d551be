"""Pitch accuracy of several systems on the frames they all voice (a diagnostic beside stage 7's log-F0 RMSE).

Stage 7's log-F0 RMSE of a system counts the frames voiced in it and in the reference. A refinement that voices
more of the reference's voiced frames (a lower VDE) is then scored on more, and harder, frames: its log-F0 RMSE
can rise while its pitch is no worse. This script scores every system on the same frames, those voiced in the
reference and in all systems (:func:`ebm.metrics.common_voiced_f0`, through :mod:`ebm.scoring`), and reports each
system's paired difference from the first (the baseline) with a 95% bootstrap interval over utterances.

Example (egs/<corpus>/tts1, after stage 7)::

    python -m ebm.bin.compare_f0 --ref_wav_scp dump/raw/eval1/wav.scp \\
        --system tacotron2 exp/tts_train_tacotron2_small/decode_free_running/eval1/wav_griffin_lim/wav.scp \\
        --system ebm exp/ebm_train_ebm_score/decode_.../eval1/wav_griffin_lim/wav.scp --output f0_common.tsv
"""

import argparse

from ebm.cli import EbmError, run, setup_logging
from ebm.io import write_atomic
from ebm.scoring import Analyses, add_f0_range, compare, f0_range, summary


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
