"""Tests for utils/slurm.pl, using a stand-in ``sbatch`` put first on PATH.

The stand-in records its arguments (one per line, calls separated by a line
"----") and runs the batch script in the background, like a very small
Slurm would.
"""

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM_PL = REPO / "utils" / "slurm.pl"
TEMPLATE_CONF = REPO / "egs" / "TEMPLATE" / "tts1" / "conf" / "slurm.conf"

FAKE_SBATCH = """#!/usr/bin/env bash
for a in "$@"; do printf '%s\\n' "$a"; done >> "$FAKE_SBATCH_LOG"
echo ---- >> "$FAKE_SBATCH_LOG"
out=/dev/null
for a in "$@"; do
  case $a in --output=*) out=${a#--output=} ;; esac
done
script=${!#}
nohup bash "$script" > "$out" 2>&1 < /dev/null &
echo "Submitted batch job $((1000 + $(grep -c -- ---- "$FAKE_SBATCH_LOG")))"
"""

FAILING_SBATCH = """#!/usr/bin/env bash
echo "sbatch: error: invalid partition specified: nopart" >&2
exit 1
"""


@pytest.fixture
def slurm(tmp_path):
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    sbatch = bindir / "sbatch"
    sbatch.write_text(FAKE_SBATCH)
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "work"
    work.mkdir()
    record = tmp_path / "sbatch_calls.txt"

    def run(*args, sbatch_script=None, timeout=60):
        if sbatch_script is not None:
            sbatch.write_text(sbatch_script)
        env = dict(os.environ)
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
        env["FAKE_SBATCH_LOG"] = str(record)
        env["SLURM_PL_POLL_INTERVAL"] = "0.05"
        env["SLURM_PL_SQUEUE_INTERVAL"] = "100000"
        return subprocess.run(
            [str(SLURM_PL), *args],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=timeout,
        )

    def calls():
        if not record.exists():
            return []
        out, cur = [], []
        for line in record.read_text().splitlines():
            if line == "----":
                out.append(cur)
                cur = []
            else:
                cur.append(line)
        return out

    run.calls = calls
    run.work = work
    return run


def has_pair(args, a, b):
    return any(x == a and y == b for x, y in zip(args, args[1:]))


def check_log_format(text, command, code=0, threads=1):
    lines = text.splitlines()
    assert lines[0] == f"# {command}"
    assert lines[1].startswith("# Started at ")
    assert re.fullmatch(rf"# Accounting: time=\d+ threads={threads}", lines[-2]), lines[-2]
    assert re.fullmatch(rf"# Ended \(code {code}\) at .+", lines[-1]), lines[-1]
    return lines[2:-2]


def test_resource_mapping_and_logs(slurm):
    proc = slurm("--mem", "2G", "--gpu", "1", "JOB=1:2", "exp/log/t.JOB.log", "echo hi JOB | tr a-z A-Z")
    assert proc.returncode == 0, proc.stderr
    calls = slurm.calls()
    assert len(calls) == 2  # one sbatch per index
    for i, args in enumerate(calls, start=1):
        assert args[0] == "--export=PATH"
        assert has_pair(args, "--mem", "2G")
        assert has_pair(args, "--partition", "gpu")
        assert "--gres=gpu:1" in args
        assert "--cpus-per-task" not in args
        assert args[-1].endswith(f"exp/log/q/t.{i}.sh")
    for i in (1, 2):
        log = slurm.work / f"exp/log/t.{i}.log"
        assert check_log_format(log.read_text(), f"echo hi {i} | tr a-z A-Z") == [f"HI {i}"]
        assert (slurm.work / f"exp/log/q/t.{i}.done").read_text().strip() == "0"


def test_defaults_add_no_gpu_or_memory(slurm):
    proc = slurm("one.log", "echo", "a b")
    assert proc.returncode == 0, proc.stderr
    (args,) = slurm.calls()
    assert "--mem" not in args
    assert not any(a.startswith("--gres") for a in args)
    assert "--partition" not in args
    assert check_log_format((slurm.work / "one.log").read_text(), "echo 'a b'") == ["a b"]


def test_num_threads_and_time(slurm):
    proc = slurm("--num-threads", "4", "--time=1:00:00", "--mem", "0", "x.log", "true")
    assert proc.returncode == 0, proc.stderr
    (args,) = slurm.calls()
    assert has_pair(args, "--cpus-per-task", "4")
    assert has_pair(args, "--time", "1:00:00")
    assert "--mem" not in args  # "option mem=0" maps to nothing
    check_log_format((slurm.work / "x.log").read_text(), "true", threads=4)


def test_failed_job_is_reported(slurm):
    proc = slurm("JOB=1:3", "exp/log/f.JOB.log", "echo JOB; [ JOB -ne 3 ] || exit 5")
    assert proc.returncode == 1
    assert "1 / 3 failed" in proc.stderr
    assert "exp/log/f.*.log" in proc.stderr
    assert "exp/log/f.3.log" in proc.stderr
    assert "exp/log/f.1.log" not in proc.stderr
    check_log_format((slurm.work / "exp/log/f.3.log").read_text(), "echo 3; [ 3 -ne 3 ] || exit 5", code=5)


def test_unknown_option_names_option_and_config(slurm):
    proc = slurm("--foo", "bar", "x.log", "true")
    assert proc.returncode != 0
    assert "--foo" in proc.stderr
    assert "config" in proc.stderr
    assert slurm.calls() == []


def test_config_file_in_conf_dir(slurm):
    conf = slurm.work / "conf"
    conf.mkdir()
    (conf / "slurm.conf").write_text(
        "# test config\ncommand sbatch --export=ALL --account proj\n"
        "option foo=* --qos $0\noption mem=* --mem-per-cpu $0\n"
    )
    proc = slurm("--foo", "high", "--mem", "3G", "x.log", "true")
    assert proc.returncode == 0, proc.stderr
    (args,) = slurm.calls()
    assert args[:3] == ["--export=ALL", "--account", "proj"]
    assert has_pair(args, "--qos", "high")
    assert has_pair(args, "--mem-per-cpu", "3G")
    # this config does not know --gpu
    proc = slurm("--gpu", "1", "x.log", "true")
    assert proc.returncode != 0
    assert "--gpu" in proc.stderr and "conf/slurm.conf" in proc.stderr


def test_config_option_overrides(slurm, tmp_path):
    conf = tmp_path / "other.conf"
    conf.write_text("command sbatch\noption gpu=* --gpus $0\ndefault gpu=2\n")
    proc = slurm("--config", str(conf), "x.log", "true")
    assert proc.returncode == 0, proc.stderr
    (args,) = slurm.calls()
    assert has_pair(args, "--gpus", "2")
    assert "--export=PATH" not in args


def test_template_config_matches_builtin_default(slurm):
    conf = slurm.work / "conf"
    conf.mkdir()
    (conf / "slurm.conf").write_text(TEMPLATE_CONF.read_text())
    proc = slurm("--gpu", "2", "--num-threads", "1", "x.log", "true")
    assert proc.returncode == 0, proc.stderr
    (args,) = slurm.calls()
    assert args[0] == "--export=PATH"
    assert has_pair(args, "--cpus-per-task", "1")
    assert "--gres=gpu:2" in args


def test_sbatch_failure_is_reported(slurm):
    proc = slurm("x.log", "true", sbatch_script=FAILING_SBATCH)
    assert proc.returncode != 0
    assert "invalid partition specified" in proc.stderr


def test_max_jobs_run_limits_concurrency(slurm):
    cmd = "if mkdir lock 2>/dev/null; then sleep 0.3; rmdir lock; else echo JOB >> overlaps; fi"
    proc = slurm("--max-jobs-run", "1", "JOB=1:3", "log/m.JOB.log", cmd)
    assert proc.returncode == 0, proc.stderr
    assert len(slurm.calls()) == 3
    assert not (slurm.work / "overlaps").exists()
    for i in (1, 2, 3):
        assert (slurm.work / f"log/m.{i}.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")


def test_usage_error(slurm):
    proc = slurm("JOB=1:2")
    assert proc.returncode != 0
    assert "Usage: slurm.pl" in proc.stderr
    assert slurm.calls() == []
