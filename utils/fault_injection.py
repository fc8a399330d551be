#!/usr/bin/env python3
"""Fault injection for stages 3 and 5 (not part of the test suite): kill -9 a tiny training, re-run, check it finishes.

On a copy of egs/mini_espeak cut to 40 sentences, stages 0-4 run once with the tests' tiny Tacotron 2. Then each
trial starts a fresh tiny training (stage 3: its own --tts_exp; stage 5: its own --ebm_exp; 4 epochs of 2 steps),
kills the recipe's whole process group with SIGKILL, and runs the same command again, which must finish (exit 0,
``# Ended (code 0)`` in train.log, a checkpoint at the last epoch, the averaged model written). Three kinds of
kill take turns:

* ``write``: while ``checkpoint.pth`` is being written (in a random epoch), seen by a poller as the file shrinking
  (``torch.save`` opens it with truncation) and then growing;
* ``timed``: at a random moment of the run (from start-up to the end of training);
* ``snapshot_write``: while an ``<N>epoch.pth`` is being written, just after that epoch's checkpoint.

A tiny model's checkpoint is written in milliseconds, so the trainer's ``torch.save`` is made to write the same
bytes in small timed chunks to the file opened in place (``--slow_write_s``; a sitecustomize put on the trainer's
PYTHONPATH), which keeps ESPnet's write pattern (truncate, then grow) and makes it observable.

After each kill the script records which files were left unloadable (``checkpoint.pth``: the kill landed inside its
write), and what the re-run's ``ebm.bin.check_checkpoint`` repaired. A summary with the counts is printed and
written to WORKDIR/fault_injection<TAG>.json.

    tools/venv/bin/python utils/fault_injection.py --workdir /tmp/fi --trials 12
    # or the two stages side by side on one setup:
    tools/venv/bin/python utils/fault_injection.py --workdir /tmp/fi --stages 3 --trials 10 --tag a &
    (after setup.done appears) tools/venv/bin/python utils/fault_injection.py --workdir /tmp/fi --reuse --stages 5 \
        --trials 10 --tag b
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ebm.checkpoint import CorruptCheckpoint, load_snapshot, load_trainer_checkpoint  # noqa: E402

TINY = ["--train_config", str(REPO / "tests/data/train_tacotron2_tiny.yaml"),
        "--inference_config", str(REPO / "tests/data/decode_tacotron2_short.yaml"),
        "--local_data_opts", "--num_dev 5 --num_eval 5", "--gv_scales", "", "--baseline_num_samples", "0"]
EBM = ["--ebm_config", str(REPO / "tests/data/train_ebm_tiny.yaml"), "--ebm_streams", "teacher_forced"]
SHORT = "--max_epoch 4 --num_iters_per_epoch 2"

SLOW_SAVE = '''
import os
if os.environ.get("FI_SLOW_WRITE_S"):
    import io, re, time
    import torch
    _save, _delay = torch.save, float(os.environ["FI_SLOW_WRITE_S"])
    def _slow_save(obj, f, *args, **kwargs):
        name = os.path.basename(str(f)) if isinstance(f, (str, os.PathLike)) else ""
        if not re.fullmatch(r"checkpoint\\.pth|\\d+epoch\\.pth", name):
            return _save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        _save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        n = 16
        with open(f, "wb") as out:  # in place, as torch.save(obj, path) writes
            for i in range(n):
                out.write(data[i * len(data) // n:(i + 1) * len(data) // n])
                out.flush()
                time.sleep(_delay / n)
    torch.save = _slow_save
'''


def copy_tree(dst):
    ignore = shutil.ignore_patterns("data", "dump", "exp", "downloads", "__pycache__")
    for sub in ["egs/TEMPLATE", "egs/mini_espeak", "utils"]:
        shutil.copytree(REPO / sub, dst / sub, symlinks=True, ignore=ignore)
    os.symlink(REPO / "tools", dst / "tools")
    recipe = dst / "egs/mini_espeak/tts1"
    sentences = recipe / "local/sentences.txt"
    sentences.write_text("".join(sentences.read_text().splitlines(keepends=True)[:40]))
    return recipe


def start(recipe, args, env, log):
    return subprocess.Popen(["./run.sh", *args], cwd=recipe, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stat(path):
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except FileNotFoundError:
        return None


def watch_files(exp, mode):
    if mode == "write":
        return [exp / "checkpoint.pth"]
    return [exp / f"{e}epoch.pth" for e in range(1, 5)]


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_killed(recipe, args, env, log, exp, mode, horizon, rng):
    """Start the run and kill it; returns what was killed and when (None: the run ended before any kill)."""
    t0 = time.monotonic()
    proc = start(recipe, args, env, log)
    if mode == "timed":
        deadline = t0 + rng.uniform(0.5, horizon)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            time.sleep(0.01)
        kill_group(proc)
        return {"mode": mode, "after_s": round(time.monotonic() - t0, 2), "file": None}
    files = watch_files(exp, mode)
    seen = {f: stat(f) for f in files}
    # the n-th write of the run (one per epoch) is the target, so that kills land in different epochs; a write
    # starts when the file appears or shrinks (torch.save opens it with truncation)
    target, writes = rng.randint(1, 4), 0
    while proc.poll() is None:
        for f in files:
            s = stat(f)
            if s is not None and s != seen[f]:
                started = seen[f] is None or s[0] < seen[f][0]
                seen[f] = s
                writes += started
                if started and writes >= target:
                    time.sleep(rng.uniform(0.0, 0.6) * float(env["FI_SLOW_WRITE_S"]))
                    kill_group(proc)
                    return {"mode": mode, "after_s": round(time.monotonic() - t0, 2), "file": f.name}
        time.sleep(0.002)
    return None


def damage(exp):
    """Which files the kill left unloadable."""
    bad = []
    ckpt = exp / "checkpoint.pth"
    if ckpt.exists():
        try:
            load_trainer_checkpoint(ckpt)
        except (CorruptCheckpoint, OSError):
            bad.append(ckpt.name)
    for p in sorted(exp.glob("*epoch.pth")):
        if p.is_file() and not p.is_symlink():
            try:
                load_snapshot(p)
            except (CorruptCheckpoint, OSError):
                bad.append(p.name)
    return bad


def finished(exp, ave):
    log = (exp / "train.log").read_text(errors="replace") if (exp / "train.log").exists() else ""
    try:
        epoch = load_trainer_checkpoint(exp / "checkpoint.pth")["reporter"]["epoch"]
    except (CorruptCheckpoint, OSError):
        epoch = None
    return "# Ended (code 0)" in log and epoch == 4 and (exp / ave).exists(), epoch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a new directory (the recipe copy and its logs)")
    p.add_argument("--trials", type=int, default=12, help="kills per stage (one kill and one re-run each)")
    p.add_argument("--slow_write_s", type=float, default=0.5, help="seconds one checkpoint write takes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", type=int, nargs="+", default=[3, 5], choices=[3, 5])
    p.add_argument("--reuse", action="store_true",
                   help="the workdir holds a finished setup (another run of this script): skip stages 0-4, so that "
                        "the stages can be injected by two runs side by side (give each its own --tag)")
    p.add_argument("--horizon_s", type=float, default=None,
                   help="how long a clean run takes (timed kills fall within it); default: time one clean run")
    p.add_argument("--tag", default="", help="prefix of this run's experiment names and summary file")
    args = p.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.workdir).resolve()
    recipe = work / "egs/mini_espeak/tts1"
    hook, logs = work / "fi_site", work / "logs"
    setup_done = work / "setup.done"
    if not args.reuse:
        work.mkdir(parents=True)
        copy_tree(work)
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SLOW_SAVE)
        logs.mkdir()
        t = time.monotonic()
        with open(logs / "setup.log", "w") as log:
            rc = subprocess.run(["./run.sh", "--stage", "0", "--stop-stage", "4", *TINY], cwd=recipe, stdout=log,
                                stderr=subprocess.STDOUT).returncode
        if rc != 0:
            sys.exit(f"setup (stages 0-4) failed: see {logs / 'setup.log'}")
        setup_done.write_text("")
        print(f"setup: stages 0-4 in {time.monotonic() - t:.0f} s", flush=True)
    elif not setup_done.exists():
        sys.exit(f"--reuse: {work} has no finished setup ({setup_done})")
    env = dict(os.environ, PYTHONPATH=f"{hook}:{REPO}", FI_SLOW_WRITE_S=str(args.slow_write_s))

    records = []
    for stage in args.stages:
        horizon = args.horizon_s
        for trial in range(args.trials):
            name = f"fi{args.tag}_s{stage}_{trial}"
            if stage == 3:
                exp = recipe / "exp" / name
                cmd = ["--stage", "3", "--stop-stage", "3", *TINY, "--tts_exp", f"exp/{name}", "--train_args", SHORT]
                ave = "train.loss.ave.pth"
            else:
                exp = recipe / "exp" / name
                cmd = ["--stage", "5", "--stop-stage", "5", *TINY, *EBM, "--ebm_exp", f"exp/{name}",
                       "--ebm_args", SHORT]
                ave = "valid.refine_gain.ave.pth"
            if horizon is None:  # the first trial of a stage runs cleanly once to time it
                t = time.monotonic()
                with open(logs / f"{name}.clean.log", "w") as log:
                    rc = start(recipe, cmd, env, log).wait()
                horizon = time.monotonic() - t
                ok, _ = finished(exp, ave)
                print(f"stage {stage}: a clean run takes {horizon:.0f} s (ok={ok and rc == 0})", flush=True)
                shutil.rmtree(exp)
            mode = ("write", "timed", "snapshot_write")[trial % 3]
            with open(logs / f"{name}.killed.log", "w") as log:
                kill = run_killed(recipe, cmd, env, log, exp, mode, horizon, rng)
            if kill is None:
                print(f"{name}: the run ended before the {mode} kill; skipped", flush=True)
                records.append({"stage": stage, "trial": trial, "mode": mode, "killed": False})
                continue
            kill["left_unloadable"] = damage(exp) if exp.exists() else []
            t = time.monotonic()
            with open(logs / f"{name}.rerun.log", "w") as log:
                rc = start(recipe, cmd, env, log).wait()
            text = (logs / f"{name}.rerun.log").read_text(errors="replace")
            ok, epoch = finished(exp, ave)
            rec = {"stage": stage, "trial": trial, "killed": True, **kill, "rerun_rc": rc,
                   "rerun_finished": ok and rc == 0, "rerun_epoch": epoch, "rerun_s": round(time.monotonic() - t, 1),
                   "repaired": [line.split("WARNING: ", 1)[1] for line in text.splitlines()
                                if "(checkpoint:" in line and "WARNING: " in line]}
            records.append(rec)
            print(json.dumps(rec), flush=True)

    kills = [r for r in records if r["killed"]]
    summary = {
        "kills": len(kills),
        "kills_stage3": sum(r["stage"] == 3 for r in kills),
        "kills_stage5": sum(r["stage"] == 5 for r in kills),
        "kills_timed": sum(r["mode"] == "timed" for r in kills),
        "kills_during_a_checkpoint_pth_write": sum(r["mode"] == "write" for r in kills),
        "kills_during_an_epoch_snapshot_write": sum(r["mode"] == "snapshot_write" for r in kills),
        "kills_leaving_checkpoint_pth_unloadable": sum("checkpoint.pth" in r["left_unloadable"] for r in kills),
        "kills_leaving_an_epoch_snapshot_unloadable": sum(
            any(f != "checkpoint.pth" for f in r["left_unloadable"]) for r in kills),
        "reruns_finished": sum(r["rerun_finished"] for r in kills),
        "reruns_failed": [f"stage {r['stage']} trial {r['trial']}" for r in kills if not r["rerun_finished"]],
    }
    (work / f"fault_injection{args.tag}.json").write_text(json.dumps({"summary": summary, "records": records}, indent=1))
    print(json.dumps(summary, indent=1))
    sys.exit(0 if not summary["reruns_failed"] else 1)


if __name__ == "__main__":
    main()
