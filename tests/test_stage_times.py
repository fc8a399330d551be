"""Per-stage wall times: utils/recipe_lib.sh's stage_timer records finished stages; ebm.bin.stage_times prints them."""

import os
import subprocess

from conftest import REPO, run_module


def _bash(script, cwd):
    # path.sh sets OMP_NUM_THREADS=1 for every recipe; the machine's cores must still be counted in full
    return subprocess.run(["bash", "-c", f"set -euo pipefail; . {REPO}/utils/recipe_lib.sh; {script}"],
                          cwd=cwd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_finished_stages_are_recorded_with_the_machine(tmp_path):
    proc = _bash("stage_timer 3; stage_timer 4; stage_timer end", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "exp/stage_times.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["run", "stage", "seconds", "started", "host", "cores", "gpus", "threads"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[1] for r in rows] == ["3", "4"]
    assert rows[0][0] == rows[1][0]  # one run id
    assert all(int(r[5]) == len(os.sched_getaffinity(0)) for r in rows)  # cores, whatever OMP_NUM_THREADS says
    assert all(r[7] == "1" for r in rows)  # the thread count the stages ran with

    proc = run_module("ebm.bin.stage_times", tmp_path / "exp/stage_times.tsv", check=True)
    assert "Tacotron 2 training" in proc.stdout and "Tacotron 2 decoding" in proc.stdout
    assert "ours (every stage but 3)" in proc.stdout
    assert "1 thread(s)" in proc.stdout


def test_a_table_from_before_the_threads_column_gets_it(tmp_path):
    (tmp_path / "exp").mkdir()
    old = "run\tstage\tseconds\tstarted\thost\tcores\tgpus\nR0\t0\t5\t2026-01-01T00:00:00\tvm\t2\tnone\n"
    (tmp_path / "exp/stage_times.tsv").write_text(old)
    proc = _bash("stage_timer 1; stage_timer end", tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in (tmp_path / "exp/stage_times.tsv").read_text().splitlines()]
    assert rows[0][-1] == "threads" and all(len(r) == 8 for r in rows)
    assert rows[1][0] == "R0" and rows[1][7] == "" and rows[2][1] == "1" and rows[2][7] == "1"
    proc = run_module("ebm.bin.stage_times", tmp_path / "exp/stage_times.tsv", "--run", "R0", check=True)
    assert "vm, 2 cores, GPU: none" in proc.stdout  # an old row prints without a thread count


def test_a_failed_stage_is_not_recorded(tmp_path):
    proc = _bash("stage_timer 0; stage_timer 1; false; stage_timer end", tmp_path)
    assert proc.returncode != 0
    rows = (tmp_path / "exp/stage_times.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[1] for r in rows] == ["0"]


def test_a_second_run_gets_its_own_table(tmp_path):
    _bash("stage_timer 0; stage_timer end", tmp_path)
    _bash("stage_timer 5; stage_timer end", tmp_path)
    proc = run_module("ebm.bin.stage_times", tmp_path / "exp/stage_times.tsv", check=True)
    assert "EBM training" in proc.stdout and "corpus" not in proc.stdout  # the last run only


def test_a_missing_table_is_named(tmp_path):
    proc = run_module("ebm.bin.stage_times", tmp_path / "nope.tsv")
    assert proc.returncode == 1 and "nope.tsv does not exist" in proc.stderr
