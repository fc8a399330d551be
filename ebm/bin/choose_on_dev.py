"""Print the systems that stage 7 evaluates on eval: each EBM's and the control's setting chosen on dev.

Eval only reports: the rule that picks a setting (:func:`ebm.results.choose_on_dev`) reads dev scores alone, so stage
7 scores every setting on dev, asks this for the choices, and vocodes and scores eval for those only (with
Tacotron 2 and analysis-synthesis), not for every setting of a sweep. One directory per line: the chosen control
(when any was given), then one decode directory per EBM experiment.
"""

import argparse

from ebm.cli import run, setup_logging
from ebm.results import ScoreTables, choose_control_on_dev, choose_on_dev
from ebm.scoring import add_f0_range, f0_range


def get_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dev_set", required=True)
    p.add_argument("--vocoder_tag", required=True, help="the scores to read: <dir>/<dev_set>/scores_<tag>.tsv")
    p.add_argument("--baseline", required=True, help="Tacotron 2's decode directory")
    p.add_argument("--ebm", action="append", default=[], help="a Langevin decode directory; repeatable")
    p.add_argument("--control", action="append", default=[], help="a control's decode directory; repeatable")
    p.add_argument("--fs", type=int, required=True)
    p.add_argument("--n_shift", type=int, required=True)
    add_f0_range(p)
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    f0min, f0max = f0_range(args)
    tables = ScoreTables(args.dev_set, None, args.vocoder_tag, f0min, f0max, args.fs, args.n_shift)
    base = tables.system("tacotron2", args.baseline, with_eval=False)
    chosen = []
    if args.control:
        chosen.append(choose_control_on_dev([tables.control(d, with_eval=False) for d in args.control]))
    records = [tables.ebm(d, base, with_eval=False) for d in args.ebm]
    chosen += [r for _, r in sorted(choose_on_dev(records, base).items())]
    for r in chosen:
        print(r.dir)


if __name__ == "__main__":
    run(main)
