"""Make an ESPnet training directory resumable before stages 3 and 5 resume it.

ESPnet's trainer rewrites ``checkpoint.pth`` in place at the end of every epoch and the recipe always passes
``--resume true``, so a kill while that file is being written leaves a truncated (often empty) file that makes
every re-run fail inside ``torch.load``. The same kill a moment later, while ``<N>epoch.pth`` or a ``*.best.pth``
link is being written, leaves a checkpoint that resumes but a model directory whose best or latest snapshot is
missing, which only fails at decoding. :func:`prepare_resume` runs before each training and repairs both:

* a ``checkpoint.pth`` that does not load (or is not a trainer checkpoint) is moved aside to
  ``checkpoint.pth.corrupt`` with a warning, and a checkpoint is rebuilt from the newest ``<N>epoch.pth`` that loads.
  Those files hold only the model's weights; the trainer also needs its reporter (epoch count and per-epoch
  statistics, from which it picks the best and averaged models), which is rebuilt from the ``<N>epoch results:``
  lines of the training logs. The optimiser and scheduler start afresh (their state is in no other file), which the
  warning says. With no loadable snapshot, training starts afresh from epoch 1, and the log says so.
* with a checkpoint that loads, the files the trainer writes after it are put back as they would be: the last
  epoch's ``<N>epoch.pth`` (rewritten from the checkpoint's weights when missing or unloadable), ``latest.pth``
  and each ``<phase>.<key>.best.pth`` of the training config's ``best_model_criterion``.

Checkpoints are loaded as the trainer loads them (``weights_only=False``): they are files the recipe's own training
wrote in its experiment directory, which the trainer is about to load the same way.
"""

import logging
import os
import re
from pathlib import Path

import torch
import yaml

CHECKPOINT = "checkpoint.pth"
TRAINER_KEYS = ("model", "reporter", "optimizers", "schedulers")
_SNAPSHOT = re.compile(r"^(\d+)epoch\.pth$")
_RESULTS = re.compile(r"\b(\d+)epoch results: (.*)$")
_PHASE = re.compile(r"\[(\w+)\] ([^\[]*)")
_LOG = re.compile(r"^train(?:\.(\d+))?\.log$")


class CorruptCheckpoint(Exception):
    """A file that ``torch.load`` cannot read, or that does not hold what the trainer needs."""


def _load(path, weights_only):
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch raises EOFError, RuntimeError, UnpicklingError, ... for a damaged file
        reason = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else "no message"
        raise CorruptCheckpoint(f"{type(e).__name__}: {reason[:200]}") from None


def load_trainer_checkpoint(path):
    """The dict ESPnet's trainer resumes from; :class:`CorruptCheckpoint` when the file cannot serve for that."""
    if os.path.getsize(path) == 0:
        raise CorruptCheckpoint("the file is empty")
    state = _load(path, weights_only=False)
    if not isinstance(state, dict) or any(k not in state for k in TRAINER_KEYS):
        raise CorruptCheckpoint(f"not a trainer checkpoint (needs the keys {', '.join(TRAINER_KEYS)})")
    reporter = state["reporter"]
    if not isinstance(reporter, dict) or not isinstance(reporter.get("epoch"), int) or "stats" not in reporter:
        raise CorruptCheckpoint("its reporter state has no epoch")
    return state


def load_snapshot(path):
    """The model weights of an ``<N>epoch.pth`` (a state dict of tensors); :class:`CorruptCheckpoint` if not that."""
    if os.path.getsize(path) == 0:
        raise CorruptCheckpoint("the file is empty")
    state = _load(path, weights_only=True)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptCheckpoint("not a model state dict")
    return state


def save_atomic(obj, path):
    """``torch.save`` through a temporary name, fsync and rename: a kill leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def move_aside(path):
    """Rename ``path`` to ``path.corrupt`` (``.corrupt.2``, ... if taken); returns the new path."""
    path = Path(path)
    target, n = path.with_name(path.name + ".corrupt"), 1
    while target.exists() or target.is_symlink():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    os.replace(path, target)
    return target


def snapshots(exp_dir):
    """``[(epoch, path), ...]`` of the ``<N>epoch.pth`` files (not links), newest first."""
    found = []
    for p in Path(exp_dir).iterdir():
        m = _SNAPSHOT.match(p.name)
        if m and p.is_file() and not p.is_symlink():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def averages_are_current(exp_dir):
    """Whether the trainer's averaged models (``*.ave.pth``) were written after its last ``checkpoint.pth``, as they
    are when a trainer run ends (it averages once, after its last epoch): only then are they the models selected at
    the checkpoint's epoch. The trainer makes each one anew as a link (to an average, or to the best epoch's own file
    when it keeps one model), so the link's own time says when; its target's may be that of an epoch long before."""
    exp_dir = Path(exp_dir)
    averages = list(exp_dir.glob("*.ave.pth"))
    since = os.path.getmtime(exp_dir / CHECKPOINT)
    return bool(averages) and all(os.lstat(p).st_mtime >= since for p in averages)

def _number(text):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None  # "time=3.2 seconds" and the like: for the log only


def stats_from_logs(exp_dir, last_epoch):
    """The reporter's per-epoch statistics for epochs 1..last_epoch, read back from ``<N>epoch results:`` lines.

    ``espnet2.bin.launch`` rotates ``train.log`` to ``train.1.log``, ``train.2.log``, ... at each start, so the
    logs are read oldest first and a later line for an epoch (an epoch trained again after a resume) wins. Values
    carry the log's rounding (3 digits), which is enough to pick the best epochs again.
    """
    logs = []
    for p in Path(exp_dir).iterdir():
        m = _LOG.match(p.name)
        if m and p.is_file():
            logs.append((int(m.group(1) or 0), p))
    stats = {}
    for _, log in sorted(logs, reverse=True):
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = _RESULTS.search(line)
                if not m or int(m.group(1)) > last_epoch:
                    continue
                epoch = {}
                for phase, body in _PHASE.findall(m.group(2)):
                    values = {}
                    for item in body.split(", "):
                        key, _, value = item.partition("=")
                        number = _number(value)
                        if key.strip() and number is not None:
                            values[key.strip()] = number
                    epoch[phase] = values
                stats[int(m.group(1))] = epoch
    return {e: stats[e] for e in sorted(stats)}


def _best_model_criterion(exp_dir):
    config = Path(exp_dir) / "config.yaml"
    if not config.is_file():
        return []
    with open(config, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    return [tuple(c) for c in conf.get("best_model_criterion") or [] if len(c) == 3]


def _link(exp_dir, name, target, log):
    p = Path(exp_dir) / name
    if p.is_symlink() and os.readlink(p) == target:
        return
    if p.is_symlink() or p.exists():
        p.unlink()
    p.symlink_to(target)
    log(f"{p} -> {target} (restored)")


def restore_links(exp_dir, stats, last_epoch, log=logging.info):
    """``latest.pth`` and the ``*.best.pth`` links, as the trainer would have left them after ``last_epoch``."""
    exp_dir = Path(exp_dir)
    if (exp_dir / f"{last_epoch}epoch.pth").is_file():
        _link(exp_dir, "latest.pth", f"{last_epoch}epoch.pth", log)
    for phase, key, mode in _best_model_criterion(exp_dir):
        values = [(e, s[phase][key]) for e, s in stats.items()
                  if e <= last_epoch and isinstance(s.get(phase), dict) and isinstance(s[phase].get(key), (int, float))]
        if not values or mode not in ("min", "max"):
            continue
        best = sorted(values, key=lambda x: x[1] if mode == "min" else -x[1])[0][0]  # as Reporter.get_best_epoch
        if (exp_dir / f"{best}epoch.pth").is_file():
            _link(exp_dir, f"{phase}.{key}.best.pth", f"{best}epoch.pth", log)


def _rebuild(exp_dir, warn):
    """A checkpoint from the newest loadable snapshot, or none; unloadable snapshots are moved aside on the way."""
    for epoch, path in snapshots(exp_dir):
        try:
            weights = load_snapshot(path)
        except CorruptCheckpoint as e:
            warn(f"{path} does not load either ({e}); moved to {move_aside(path)}")
            continue
        stats = stats_from_logs(exp_dir, epoch)
        save_atomic({"model": weights, "reporter": {"epoch": epoch, "stats": stats}, "optimizers": [],
                     "schedulers": [], "scaler": None}, Path(exp_dir) / CHECKPOINT)
        missing = [e for e in range(1, epoch + 1) if e not in stats]
        warn(f"training resumes after epoch {epoch} from the weights of {path}: the optimiser and scheduler start "
             "afresh (their state was only in the lost checkpoint)"
             + (f"; no logged statistics for epoch(s) {missing}, which cannot be chosen as best" if missing else ""))
        restore_links(exp_dir, stats, epoch, log=warn)
        return epoch
    return None


def prepare_resume(exp_dir, warn=logging.warning):
    """Leave ``exp_dir`` in a state ESPnet's trainer resumes from (see the module docstring).

    Returns the epoch training resumes after (0: from the start).
    """
    exp_dir = Path(exp_dir)
    ckpt = exp_dir / CHECKPOINT
    if not exp_dir.is_dir() or not (ckpt.exists() or ckpt.is_symlink()):
        return 0
    try:
        state = load_trainer_checkpoint(ckpt)
    except (CorruptCheckpoint, OSError) as e:
        warn(f"{ckpt} does not load ({e}), as when a training is killed while writing it; moved to "
             f"{move_aside(ckpt)}")
        epoch = _rebuild(exp_dir, warn)
        if epoch is None:
            warn(f"no <N>epoch.pth in {exp_dir} loads: training starts afresh from epoch 1")
            return 0
        return epoch
    epoch = state["reporter"]["epoch"]
    snapshot = exp_dir / f"{epoch}epoch.pth"
    if epoch > 0:
        try:
            load_snapshot(snapshot)
        except (CorruptCheckpoint, OSError) as e:
            if snapshot.exists():
                warn(f"{snapshot} does not load ({e}); moved to {move_aside(snapshot)}")
            save_atomic(state["model"], snapshot)
            warn(f"{snapshot} rewritten from {ckpt} (the training stopped before it was written in full)")
        restore_links(exp_dir, state["reporter"]["stats"], epoch, log=warn)
    logging.info(f"{ckpt} loads: training resumes after epoch {epoch}")
    return epoch


__all__ = ["CorruptCheckpoint", "load_snapshot", "load_trainer_checkpoint", "move_aside", "prepare_resume",
           "restore_links", "save_atomic", "snapshots", "stats_from_logs"]
