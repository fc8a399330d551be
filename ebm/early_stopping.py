"""Has an ESPnet training finished, and what ended it: the early-stopping rule or the epoch cap?

Baselines are trained to convergence by ESPnet's own rule (``patience`` epochs without a better dev loss), with
``max_epoch`` only as a cap. ESPnet's trainer re-checks the rule only after training another epoch, so a resumed
run that had already stopped would train one more epoch each time the stage is re-run. The recipe asks here
first, from the reporter state that ESPnet keeps in ``checkpoint.pth``, and skips a training that is done.
"""

import shlex
from typing import NamedTuple, Optional, Sequence

from ebm.io import read_yaml


class TrainingState(NamedTuple):
    finished: bool
    epoch: int  # last finished epoch (0: none)
    best_epoch: Optional[int]  # by the early-stopping criterion, where it was reported
    reason: str  # one line for the log


def trainer_options(config_path: str, extra_args: str = "") -> dict:
    """``max_epoch``, ``patience`` and ``early_stopping_criterion`` as the trainer will see them: the config's
    values, overridden by ``--max_epoch N`` / ``--patience N`` in the extra command-line options."""
    conf = read_yaml(config_path, "training config")
    opts = {"max_epoch": conf.get("max_epoch", 40), "patience": conf.get("patience"),
            "early_stopping_criterion": list(conf.get("early_stopping_criterion", ["valid", "loss", "min"]))}
    words = shlex.split(extra_args or "")
    for i, word in enumerate(words):
        for key in ("max_epoch", "patience"):
            value = None
            if word == f"--{key}" and i + 1 < len(words):
                value = words[i + 1]
            elif word.startswith(f"--{key}="):
                value = word.split("=", 1)[1]
            if value is not None:
                opts[key] = None if value.lower() in ("none", "null") else int(value)
    return opts


def state_of(reporter_state: dict, max_epoch: int, patience: Optional[int],
             criterion: Sequence[str] = ("valid", "loss", "min")) -> TrainingState:
    """The state of a training from ESPnet's reporter state (``{"epoch": N, "stats": {epoch: {key: {key2: v}}}}``)."""
    epoch = int(reporter_state.get("epoch", 0))
    stats = reporter_state.get("stats", {})
    key1, key2, mode = criterion
    values = {e: s[key1][key2] for e, s in stats.items() if key2 in s.get(key1, {})}
    best = None
    if values:
        pick = min if mode == "min" else max
        best = pick(sorted(values), key=lambda e: values[e])
    if epoch >= max_epoch:
        return TrainingState(True, epoch, best, f"finished at the epoch cap max_epoch={max_epoch}"
                             + (f" (best {key1}.{key2} at epoch {best})" if best is not None else "")
                             + (": the early-stopping rule had not ended it; raise max_epoch" if patience else ""))
    if patience is not None and best is not None and epoch - best > patience:
        return TrainingState(True, epoch, best, f"stopped by the early-stopping rule at epoch {epoch}: {key1}.{key2} "
                             f"best at epoch {best}, not improved for {epoch - best} epochs (patience {patience})")
    return TrainingState(False, epoch, best, f"{epoch} of at most {max_epoch} epochs done"
                         + (f", best {key1}.{key2} at epoch {best}" if best is not None else ""))
