"""ebm.bin.compare_results: a rerun's RESULTS.json against the committed one, row by row of the table."""

import copy
import json

from conftest import run_module

from ebm.results import reproduction


def _entry(mcd, diff=None):
    e = {"mcd": mcd, "log_f0_rmse": 0.1, "ffe": 0.2, "predicted_mos": 2.0, "mel_distance": 5.0}
    if diff is not None:
        e["diff_vs_tacotron2_ci95"] = {"mcd": diff, "log_f0_rmse": [0.0, -0.01, 0.01],
                                       "ffe": [0.0, -0.01, 0.01], "predicted_mos": [0.0, -0.05, 0.05],
                                       "mel_distance": [0.0, -0.1, 0.1]}
    return e


def _records():
    return [
        {"system": "analysis-synthesis", "eval": _entry(11.0, [-1.7, -1.9, -1.5])},
        {"system": "tacotron2", "eval": _entry(12.7)},
        {"system": "control_gv", "scale": 1.25, "chosen_on_dev": True, "eval": _entry(12.9, [0.2, 0.1, 0.3])},
        {"system": "control_gv", "scale": 1.5, "chosen_on_dev": False, "eval": None},
        {"system": "ebm", "exp": "ebm_a", "steps": 1, "lambda": 0.6, "chosen_on_dev": True,
         "eval": _entry(12.68, [-0.02, -0.06, 0.02])},
        {"system": "ebm", "exp": "ebm_a", "steps": 2, "lambda": 1.0, "chosen_on_dev": False, "eval": None},
    ]


def test_the_same_run_reproduces_every_difference():
    rows = reproduction(_records(), _records())
    assert [r["role"] for r in rows] == ["analysis-synthesis", "tacotron2", "control", "ebm ebm_a"]
    insides = [c[3] for r in rows for c in r["cells"]]
    assert insides.count(True) == 15 and insides.count(False) == 0
    assert all(c[3] is None for c in rows[1]["cells"])  # Tacotron 2's own numbers are not judged


def test_a_difference_outside_the_committed_interval_is_crossed_and_the_setting_may_differ():
    rerun = _records()
    ebm = rerun[4]
    ebm.update(steps=2, chosen_on_dev=True)
    ebm["eval"]["diff_vs_tacotron2_ci95"]["mcd"] = [-0.3, -0.4, -0.2]  # a gain the committed run did not see
    rows = reproduction(_records(), rerun)
    row = next(r for r in rows if r["role"] == "ebm ebm_a")
    assert row["settings"] == ("1 step, lambda 0.6", "2 steps, lambda 0.6")
    assert [c[3] for c in row["cells"]] == [False, True, True, True, True]


def test_a_row_in_one_run_only_is_listed_and_the_command_reports(tmp_path):
    committed = _records()
    rerun = [r for r in copy.deepcopy(committed) if r["system"] != "control_gv"]
    rerun.append({"system": "ebm", "exp": "ebm_b", "steps": 1, "lambda": 1.0, "chosen_on_dev": True,
                  "eval": _entry(13.0, [0.3, 0.2, 0.4])})
    rows = {r["role"]: r for r in reproduction(committed, rerun)}
    assert rows["control"]["cells"] == [] and rows["control"]["settings"] == ("x1.25", "not run")
    assert rows["ebm ebm_b"]["settings"] == ("not run", "1 step, lambda 1.0")

    (tmp_path / "a.json").write_text(json.dumps(committed))
    (tmp_path / "b.json").write_text(json.dumps(rerun))
    proc = run_module("ebm.bin.compare_results", tmp_path / "a.json", tmp_path / "b.json", check=True)
    assert "scored in one run only" in proc.stdout
    assert "10 of 10 differences from Tacotron 2 inside the committed intervals" in proc.stdout


def test_a_missing_or_foreign_file_is_named(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(_records()))
    proc = run_module("ebm.bin.compare_results", tmp_path / "a.json", tmp_path / "nope.json")
    assert proc.returncode == 1 and "nope.json does not exist" in proc.stderr
    (tmp_path / "c.json").write_text(json.dumps({"mcd": 1}))
    proc = run_module("ebm.bin.compare_results", tmp_path / "a.json", tmp_path / "c.json")
    assert proc.returncode == 1 and "c.json is not a RESULTS.json" in proc.stderr
