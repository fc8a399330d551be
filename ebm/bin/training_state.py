"""Print whether the ESPnet training in an exp dir has finished (early-stopping rule or epoch cap), and why.

Stages 3 and 5 ask before they (re)start ESPnet's trainer, so that re-running a finished stage trains nothing,
and log the answer afterwards, so that the log says at which epoch and by which rule a model stopped. Output, one
line on stdout: ``finished<TAB>reason`` or ``continue<TAB>reason``, and while a training goes on past the rule's
stop (``--extend``), ``continue<TAB>reason<TAB>trainer options<TAB>keep``: the options take it to its next stop,
and ``keep`` is the epoch of the convergence check's model when the models the trainer last selected are that
model's (keep them before training on), else empty.
"""

import argparse
import os

from ebm.cli import EbmError, run
from ebm.early_stopping import state_of, trainer_options


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp", required=True, help="the training's output dir (holds checkpoint.pth)")
    p.add_argument("--config", required=True, help="the training config (max_epoch, patience)")
    p.add_argument("--args", default="", help="extra trainer options, as passed to the trainer")
    p.add_argument("--extend", type=float, default=1.0,
                   help="once the early-stopping rule fires at epoch E, train on to ceil(extend * E) (1: stop at E)")
    args = p.parse_args(argv)
    if args.extend < 1:
        raise EbmError(f"--extend {args.extend}: it must be at least 1 (1 stops where the rule fires)")
    opts = trainer_options(args.config, args.args)
    ckpt = os.path.join(args.exp, "checkpoint.pth")
    if not os.path.exists(ckpt):
        print(f"continue\tno {ckpt} yet: training starts at epoch 1 (at most {opts['max_epoch']} epochs)")
        return
    import torch

    from ebm.checkpoint import averages_are_current  # with torch: only once there is a checkpoint

    try:  # the recipe's own file, written by ESPnet's trainer (it holds numpy values, not only tensors)
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise EbmError(f"{ckpt} does not load ({type(e).__name__}: {e}); move it aside to restart the training "
                       "from its last epoch snapshot or from scratch")
    if "reporter" not in state:
        raise EbmError(f"{ckpt} holds no trainer state (keys: {', '.join(state)}): it is not ESPnet's checkpoint")
    st = state_of(state["reporter"], opts["max_epoch"], opts["patience"], opts["early_stopping_criterion"],
                  extend=args.extend)
    more, reason = "", st.reason
    if st.extend_to is not None:
        to, keep = st.extend_to, (st.check_epoch if st.epoch == st.check_epoch else "")
        if keep and not averages_are_current(args.exp):
            # Killed after the check's epoch but before the trainer averaged its best models: the averages on disk
            # are an earlier run's. A trainer run to the epoch it has reached trains nothing and writes them.
            reason = (f"the averaged models in {args.exp} predate its epoch-{keep} checkpoint (the trainer was "
                      f"stopped before it averaged them): averaging them first, training no epoch")
            to, keep = keep, ""
        more = f"\t--max_epoch {to} --patience none\t{keep}"
    print(f"{'finished' if st.finished else 'continue'}\t{reason}{more}")


if __name__ == "__main__":
    run(main)
