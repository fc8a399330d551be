"""Tests for utils/run.pl."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_PL = REPO / "utils" / "run.pl"


@pytest.fixture
def run_pl(tmp_path):
    def run(*args, timeout=60):
        return subprocess.run(
            [str(RUN_PL), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=timeout,
        )

    return run


def check_log_format(text, command, code=0):
    lines = text.splitlines()
    assert lines[0] == f"# {command}"
    assert lines[1].startswith("# Started at ")
    assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[-2]), lines[-2]
    assert re.fullmatch(rf"# Ended \(code {code}\) at .+", lines[-1]), lines[-1]
    return lines[2:-2]  # the command's output


def test_job_array_substitutes_index(run_pl, tmp_path):
    proc = run_pl("JOB=1:4", "exp/log/x.JOB.log", "echo hello JOB; echo err JOB >&2")
    assert proc.returncode == 0, proc.stderr
    logs = sorted(p.name for p in (tmp_path / "exp/log").iterdir())
    assert logs == ["x.1.log", "x.2.log", "x.3.log", "x.4.log"]
    for i in range(1, 5):
        text = (tmp_path / f"exp/log/x.{i}.log").read_text()
        body = check_log_format(text, f"echo hello {i}; echo err {i} >&2")
        assert sorted(body) == [f"err {i}", f"hello {i}"]


def test_other_variable_name_and_range(run_pl, tmp_path):
    proc = run_pl("SPLIT=2:3", "log/s.SPLIT.log", "echo", "part", "SPLIT", "of", "JOB")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["s.2.log", "s.3.log"]
    body = check_log_format((tmp_path / "log/s.3.log").read_text(), "echo part 3 of JOB")
    assert body == ["part 3 of JOB"]


def test_single_job_without_range(run_pl, tmp_path):
    proc = run_pl("deep/dir/one.log", "echo JOB stays")
    assert proc.returncode == 0, proc.stderr
    body = check_log_format((tmp_path / "deep/dir/one.log").read_text(), "echo JOB stays")
    assert body == ["JOB stays"]


def test_pipe_in_single_argument(run_pl, tmp_path):
    proc = run_pl("p.log", "echo abc | tr a-z A-Z")
    assert proc.returncode == 0, proc.stderr
    assert check_log_format((tmp_path / "p.log").read_text(), "echo abc | tr a-z A-Z") == ["ABC"]


def test_pipe_as_separate_argument(run_pl, tmp_path):
    proc = run_pl("p.log", "echo", "abc", "|", "tr", "a-z", "A-Z")
    assert proc.returncode == 0, proc.stderr
    assert check_log_format((tmp_path / "p.log").read_text(), "echo abc | tr a-z A-Z") == ["ABC"]


def test_arguments_with_spaces_are_quoted(run_pl, tmp_path):
    proc = run_pl("q.log", "printf", "[%s]\\n", "a  b", "it's")
    assert proc.returncode == 0, proc.stderr
    body = check_log_format(
        (tmp_path / "q.log").read_text(), "printf '[%s]\\n' 'a  b' 'it'\\''s'"
    )
    assert body == ["[a  b]", "[it's]"]


def test_failed_job_is_reported(run_pl, tmp_path):
    proc = run_pl("JOB=1:3", "exp/log/f.JOB.log", "echo run JOB; [ JOB -ne 2 ] || exit 3")
    assert proc.returncode == 1
    assert "1 / 3 failed" in proc.stderr
    assert "exp/log/f.*.log" in proc.stderr
    assert "exp/log/f.2.log" in proc.stderr
    assert "exp/log/f.1.log" not in proc.stderr
    check_log_format((tmp_path / "exp/log/f.2.log").read_text(), "echo run 2; [ 2 -ne 2 ] || exit 3", code=3)
    check_log_format((tmp_path / "exp/log/f.3.log").read_text(), "echo run 3; [ 3 -ne 2 ] || exit 3", code=0)


def test_all_failed_single_job(run_pl, tmp_path):
    proc = run_pl("one.log", "false")
    assert proc.returncode == 1
    assert "1 / 1 failed, log is in one.log" in proc.stderr


LOCKED = "if mkdir lock 2>/dev/null; then sleep 0.4; rmdir lock; else echo JOB >> overlaps; fi"


def test_max_jobs_run_one_is_serial(run_pl, tmp_path):
    proc = run_pl("--max-jobs-run", "1", "JOB=1:3", "log/m.JOB.log", LOCKED)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "overlaps").exists()
    assert len(list((tmp_path / "log").iterdir())) == 3


def test_default_runs_jobs_in_parallel(run_pl, tmp_path):
    # the same command overlaps without --max-jobs-run (shows the check works)
    proc = run_pl("JOB=1:3", "log/m.JOB.log", LOCKED)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "overlaps").exists()


def test_resource_options_are_accepted(run_pl, tmp_path):
    proc = run_pl(
        "--mem", "4G", "--num-threads", "2", "--gpu=0", "--time", "1:00:00",
        "JOB=1:2", "r.JOB.log", "echo ok JOB",
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok 2" in (tmp_path / "r.2.log").read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus", "1", "x.log", "true"],
        ["--max-jobs-run", "zero", "x.log", "true"],
        ["--max-jobs-run"],
        ["JOB=3:1", "x.JOB.log", "true"],
        ["x.log"],
        ["JOB=1:2", "same.log", "true"],
    ],
)
def test_usage_errors(run_pl, tmp_path, args):
    proc = run_pl(*args)
    assert proc.returncode != 0
    assert "Usage: run.pl" in proc.stderr
    assert not (tmp_path / "x.log").exists()
