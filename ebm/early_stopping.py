"""Has an ESPnet training finished, and what ended it: the early-stopping rule or the epoch cap?

Baselines are trained to convergence by ESPnet's own rule (``patience`` epochs without a better dev loss), with
``max_epoch`` only as a cap. ESPnet's trainer re-checks the rule only after training another epoch, so a resumed
run that had already stopped would train one more epoch each time the stage is re-run. The recipe asks here
first, from the reporter state that ESPnet keeps in ``checkpoint.pth``, and skips a training that is done.

The dev loss that the rule watches is teacher-forced: for Tacotron 2 it flattens into a noisy plateau while the
free-running output, which is what gets compared, still improves. So stage 3 can train on past the rule's stop by
a stated factor (``extend``): the rule fixes the epoch E where it first fired, and training goes on to
``ceil(extend * E)`` epochs with the rule off. The first firing is recomputed from the dev-loss history, so the
target does not move when the extension itself finds a better dev loss, or when a killed run is resumed.

Whether that target is long enough is checked, not assumed: the extension stops once on its way, at two thirds of
the target (``check_epoch``; the rule's stop if that is later), so that the recipe can keep the model selected
there and compare it, decoded free-running on dev, with the one trained 50% longer. A measure that still improved
over that last third says the baseline had not levelled off.
"""

import math
import shlex
from typing import NamedTuple, Optional, Sequence

from ebm.io import read_yaml


#: The convergence check compares the final model with the same training stopped this many times earlier (#22's
#: "a checkpoint trained 50% longer").
CHECK_LONGER = 1.5


class TrainingState(NamedTuple):
    finished: bool
    epoch: int  # last finished epoch (0: none)
    best_epoch: Optional[int]  # by the early-stopping criterion, where it was reported
    reason: str  # one line for the log
    extend_to: Optional[int] = None  # set while training on past the rule's stop: the epoch to reach next
    check_epoch: Optional[int] = None  # with an extension: where the model the convergence check compares with stops


def trainer_options(config_path: str, extra_args: str = "") -> dict:
    """``max_epoch``, ``patience`` and ``early_stopping_criterion`` as the trainer will see them: the config's
    values, overridden by ``--max_epoch N`` / ``--patience N`` / ``--early_stopping_criterion valid loss min`` in the
    extra command-line options."""
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
        if word == "--early_stopping_criterion" and i + 3 < len(words):  # ESPnet's three words: valid loss min
            opts["early_stopping_criterion"] = words[i + 1:i + 4]
    return opts


def _running_best(reporter_state: dict, criterion: Sequence[str]):
    """``(epoch, best epoch so far)`` for each epoch that reported the criterion, in order; on a tie the earlier
    epoch stays best, as in ESPnet's reporter."""
    key1, key2, mode = criterion
    stats = reporter_state.get("stats", {})
    values = {int(e): s[key1][key2] for e, s in stats.items() if key2 in s.get(key1, {})}
    best = None
    for e in sorted(values):
        if best is None or (values[e] < values[best] if mode == "min" else values[e] > values[best]):
            best = e
        yield e, best


def rule_epoch(reporter_state: dict, patience: Optional[int],
               criterion: Sequence[str] = ("valid", "loss", "min")) -> Optional[int]:
    """The first epoch at which ESPnet's rule (no better value for more than ``patience`` epochs) fired, judged as
    the trainer judges it after each epoch, on the history up to that epoch; None if it never fired."""
    if patience is None:
        return None
    return next((e for e, best in _running_best(reporter_state, criterion) if e - best > patience), None)


def state_of(reporter_state: dict, max_epoch: int, patience: Optional[int],
             criterion: Sequence[str] = ("valid", "loss", "min"), extend: float = 1.0) -> TrainingState:
    """The state of a training from ESPnet's reporter state (``{"epoch": N, "stats": {epoch: {key: {key2: v}}}}``).

    With ``extend`` > 1, a training that the rule stopped at epoch E is finished only at T = ``ceil(extend * E)``
    epochs (at most ``max_epoch``); until then the state says how far to train next (``extend_to``): first to
    ``check_epoch`` = max(E, floor(T / CHECK_LONGER)), so that T is at least 50% longer than the model kept there,
    then to T."""
    if extend < 1:
        raise ValueError(f"extend must be at least 1 (1: stop where the rule fires), not {extend}")
    epoch = int(reporter_state.get("epoch", 0))
    key1, key2, _ = criterion
    history = list(_running_best(reporter_state, criterion))
    best = history[-1][1] if history else None
    fired = rule_epoch(reporter_state, patience, criterion) if extend > 1 else None
    if fired is not None:
        target = min(max_epoch, math.ceil(extend * fired))
        check = max(fired, math.floor(target / CHECK_LONGER))
        said = (f"the early-stopping rule fired at epoch {fired} (patience {patience}); training on to "
                f"{extend:g} x {fired} = epoch {target}" + (" (the max_epoch cap)" if target == max_epoch else "")
                + (f", by way of epoch {check} (the convergence check's model)" if check > fired else ""))
        if epoch >= target:
            return TrainingState(True, epoch, best, f"finished: {said}; best {key1}.{key2} at epoch {best}",
                                 check_epoch=check)
        return TrainingState(False, epoch, best, f"{said}: {epoch} of {target} epochs done",
                             extend_to=check if epoch < check else target, check_epoch=check)
    if epoch >= max_epoch:
        return TrainingState(True, epoch, best, f"finished at the epoch cap max_epoch={max_epoch}"
                             + (f" (best {key1}.{key2} at epoch {best})" if best is not None else "")
                             + (": the early-stopping rule had not ended it; raise max_epoch" if patience else ""))
    if patience is not None and best is not None and epoch - best > patience:
        return TrainingState(True, epoch, best, f"stopped by the early-stopping rule at epoch {epoch}: {key1}.{key2} "
                             f"best at epoch {best}, not improved for {epoch - best} epochs (patience {patience})")
    return TrainingState(False, epoch, best, f"{epoch} of at most {max_epoch} epochs done"
                         + (f", best {key1}.{key2} at epoch {best}" if best is not None else ""))
