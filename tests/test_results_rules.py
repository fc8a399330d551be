"""The rules behind every headline (ebm.results): the dev choice and the verdict, on small hand-made tables."""

from dataclasses import replace

import numpy as np
import pytest

from ebm.cli import EbmError
from ebm.results import (Numbers, ScoreTables, SystemRecord, choose_control_on_dev, choose_on_dev, passes_on_dev,
                         verdict, verdict_at_a_glance)
from ebm.scoring import COLUMNS, write_f0_tracks

BASE = dict(mcd=6.0, log_f0_rmse=0.20, vde=0.1, gpe=0.1, ffe=0.30, mel_distance=1.0, mcd_silence_share=0.1,
            predicted_mos=3.0)


def numbers(**change):
    return Numbers(**{**BASE, **change}, n_utts=4, rtf=0.1)


def rec(name, exp="exp/ebm_a", eval_=None, **dev):
    return SystemRecord(system="ebm", dir=f"exp/{name}", dev=numbers(**dev), eval=eval_, exp=exp, steps=10,
                        step_size=0.01, sigma=0.1, min_bin=0)


BASE_REC = SystemRecord(system="tacotron2", dir="base", dev=numbers(), eval=numbers())


def test_a_setting_failing_on_dev_is_not_chosen_for_a_lower_mcd():
    good = rec("good", mcd=5.5)
    breaks_pitch = rec("breaks_pitch", mcd=4.0, ffe=0.5)  # lower MCD, FFE worse: fails one condition
    assert passes_on_dev(good, BASE_REC) and not passes_on_dev(breaks_pitch, BASE_REC)
    assert choose_on_dev([breaks_pitch, good], BASE_REC)["exp/ebm_a"] is good


def test_among_passing_settings_the_lowest_dev_mcd_wins_and_a_tie_keeps_the_first_given():
    a, b, c = rec("a", mcd=5.5), rec("b", mcd=5.0), rec("c", mcd=5.0)
    assert choose_on_dev([a, b, c], BASE_REC)["exp/ebm_a"] is b
    assert choose_on_dev([a, c, b], BASE_REC)["exp/ebm_a"] is c


def test_when_all_fail_the_fewest_failed_conditions_then_lowest_dev_mcd():
    two_fail = rec("two_fail", mcd=4.0, ffe=0.5, predicted_mos=2.0)
    one_fail_high = rec("one_fail_high", mcd=5.8, log_f0_rmse=0.3)
    one_fail_low = rec("one_fail_low", mcd=5.6, predicted_mos=2.9)
    mcd_fail = rec("mcd_fail", mcd=6.5)  # also one condition (MCD not lower), but the highest MCD
    best = choose_on_dev([two_fail, one_fail_high, mcd_fail, one_fail_low], BASE_REC)["exp/ebm_a"]
    assert best is one_fail_low and not passes_on_dev(best, BASE_REC)


def test_each_exp_chooses_within_its_own_settings():
    a, b = rec("a", exp="exp/ebm_a", mcd=5.0), rec("b", exp="exp/ebm_b", mcd=5.9)
    assert choose_on_dev([a, b], BASE_REC) == {"exp/ebm_a": a, "exp/ebm_b": b}


def test_nan_fails_its_condition():
    undefined = rec("undefined", mcd=4.0, log_f0_rmse=float("nan"))
    defined = rec("defined", mcd=5.0)
    assert not passes_on_dev(undefined, BASE_REC)
    assert choose_on_dev([undefined, defined], BASE_REC)["exp/ebm_a"] is defined


def test_the_control_is_the_scale_with_the_lowest_dev_mcd():
    # a strong scale: MOS and pitch look better, MCD much worse; a mild one: MCD below Tacotron 2's, MOS, F0 worse
    strong = SystemRecord(system="control_gv", dir="gv1.75", exp="control_gv", scale=1.75,
                          dev=numbers(mcd=7.0, predicted_mos=3.2, log_f0_rmse=0.19, ffe=0.29), eval=None)
    mild = SystemRecord(system="control_gv", dir="gv1.25", exp="control_gv", scale=1.25,
                        dev=numbers(mcd=5.9, predicted_mos=2.9, log_f0_rmse=0.21), eval=None)
    assert choose_on_dev([strong, mild], BASE_REC)["control_gv"] is strong  # the EBMs' rule would pick it
    assert choose_control_on_dev([strong, mild]) is mild and choose_control_on_dev([mild, strong]) is mild


# --- the verdict, on per-utterance tables --------------------------------------------------------------------------

def write_scores(tmp_path, name, **per_utt):
    """A stage-7 table of 6 utterances: Tacotron 2's values plus ``per_utt[column]`` (a list) where given."""
    rng = np.random.default_rng(0)
    lines = ["utt\t" + "\t".join(COLUMNS)]
    for i in range(6):
        vals = [BASE[c] + 0.01 * rng.standard_normal() * (name != "base") + per_utt.get(c, [0] * 6)[i]
                for c in COLUMNS]
        lines.append(f"u{i}\t" + "\t".join(f"{v:.5f}" for v in vals))
    d = tmp_path / name / "eval1"
    d.mkdir(parents=True)
    (d / "scores_gl.tsv").write_text("\n".join(lines) + "\n")
    # the F0 tracks scoring writes beside the table: a reference voiced on frames 1-8, the system on 2-9
    ref_f0 = np.array([0.0] + [100.0] * 8 + [0.0])
    f0 = np.array([0.0, 0.0] + [100.0 * (1.01 if name == "base" else 1.02)] * 8)
    write_f0_tracks(str(d / "scores_gl.f0.tsv"), [(f"u{i}", ref_f0, f0) for i in range(6)])
    d_dev = tmp_path / name / "dev"
    d_dev.mkdir()
    (d_dev / "scores_gl.tsv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / name)


@pytest.fixture
def tables():
    return ScoreTables("dev", "eval1", "gl", 40.0, 800.0, 22050, 256)


def systems(tmp_path, tables, ebm_change, control_change=None):
    base = tables.system("tacotron2", write_scores(tmp_path, "base"))
    ebm = tables.system("ebm", write_scores(tmp_path, "ebm", **ebm_change), exp="exp/ebm_a", steps=10,
                        step_size=0.01, sigma=0.1, min_bin=0)
    ctl = None
    if control_change is not None:
        ctl = tables.system("control_gv", write_scores(tmp_path, "base_gv1.2", **control_change), exp="control_gv",
                            criterion="variance x1.2", scale=1.2)
    return tables.with_diffs(ebm, base), base, ctl


BETTER = dict(mcd=[-0.5, -0.6, -0.4, -0.5, -0.7, -0.5], ffe=[-0.01] * 6, log_f0_rmse=[-0.01] * 6)


def test_the_verdict_beats_only_when_every_condition_holds(tmp_path, tables):
    ebm, base, _ = systems(tmp_path, tables, BETTER)
    before = ebm.eval.to_dict()
    v = verdict(ebm, base, tables)
    assert v.beats is True and v.text.startswith("**beats Tacotron 2**")
    assert "no variance-scaling control was run" in v.text and v.vs_control_ci95 is None
    assert set(v.diff_ci95) == {"mcd", "log_f0_rmse", "ffe"} and v.diff_ci95["mcd"][2] < 0
    assert ebm.eval.to_dict() == before  # the verdict returns its intervals; it writes into no record
    assert list(v.eval_extra()) == ["mcd_diff_ci95", "log_f0_rmse_diff_ci95", "ffe_diff_ci95", "common_voiced_f0",
                                    "verdict_conditions"]
    assert v.conditions == {"mcd": True, "predicted_mos": True, "log_f0_rmse": True, "ffe": True}


def test_a_worse_predicted_mos_loses_the_verdict(tmp_path, tables):
    ebm, base, _ = systems(tmp_path, tables, {**BETTER, "predicted_mos": [-0.5, -0.4, -0.6, -0.5, -0.5, -0.4]})
    v = verdict(ebm, base, tables)
    assert v.beats is False and v.text.startswith("**does not beat Tacotron 2**")
    assert "predicted MOS not worse outside the noise: NO" in v.text and "MCD lower outside the noise: yes" in v.text
    assert v.conditions == {"mcd": True, "predicted_mos": False, "log_f0_rmse": True, "ffe": True}


def test_a_better_control_loses_the_verdict(tmp_path, tables):
    ctl_change = dict(mcd=[-1.0, -1.1, -0.9, -1.0, -1.2, -1.0])
    ebm, base, ctl = systems(tmp_path, tables, BETTER, ctl_change)
    v = verdict(ebm, base, tables, ctl=ctl)
    assert v.beats is False and "MCD below the control's outside the noise: NO" in v.text
    assert "the EBM is worse" in v.text and v.vs_control_ci95[1] > 0
    assert "mcd_diff_vs_control_ci95" in v.eval_extra()
    assert v.conditions["vs_control"] is False and sum(v.conditions.values()) == 4
    v_without = verdict(ebm, base, tables)  # the same setting without a control: it would have won
    assert v_without.beats is True


def test_a_setting_without_eval_decodes_says_what_to_run(tables, tmp_path):
    v = verdict(rec("dev_only", mcd=5.0), BASE_REC, tables)
    assert v.beats is None and v.eval_extra() == {}
    assert "**not decoded on eval1**" in v.text and "--ebm_decode_like exp/dev_only --ebm_decode_sets eval1" in v.text
    (tmp_path / "decoded/eval1").mkdir(parents=True)  # decoded on eval, but stage 7 did not score it there
    v = verdict(replace(rec("x", mcd=5.0), dir=str(tmp_path / "decoded")), BASE_REC, tables)
    assert v.beats is None and "**not scored on eval1**" in v.text and "rerun stage 7" in v.text


def test_the_verdict_compares_pitch_on_common_voiced_frames_from_the_f0_tracks(tmp_path, tables):
    ebm, base, _ = systems(tmp_path, tables, BETTER)
    v = verdict(ebm, base, tables)
    c = v.common_voiced_f0
    # frames 2-8 are voiced in the reference and both systems; 7 of the reference's 8 voiced frames in each
    assert c["n_utts"] == 6 and c["mean_common_frames"] == 7
    assert c["log_f0_rmse"] == pytest.approx([np.log(1.01), np.log(1.02)])
    assert c["voiced_share"] == pytest.approx([7 / 8, 7 / 8])
    assert "On the frames voiced in the reference and in both systems, log-F0 RMSE 0.0198 vs 0.0100" in v.text


def test_the_verdict_names_missing_f0_tracks_and_the_fix(tmp_path, tables):
    ebm, base, _ = systems(tmp_path, tables, BETTER)
    (tmp_path / "ebm" / "eval1" / "scores_gl.f0.tsv").unlink()
    with pytest.raises(EbmError, match=r"ebm/eval1/scores_gl\.f0\.tsv is missing .* rerun stage 7"):
        verdict(ebm, base, tables)


# --- the verdict at a glance, from RESULTS.json's records ---------------------------------------------------------

def glance_record(held, control=True, **over):
    e = {"diff_vs_tacotron2_ci95": {"mcd": [-0.5, -0.7, -0.3], "predicted_mos": [-0.2, -0.3, -0.1],
                                    "log_f0_rmse": [0.001, -0.002, 0.004], "ffe": [None, None, None]},
         "verdict_conditions": held}
    if control:
        e["mcd_diff_vs_control_ci95"] = [0.25, 0.1, 0.4]
    r = {"system": "ebm", "exp": "ebm_a", "steps": 1, "lambda": 0.6, "sigma": 0.0, "chosen_on_dev": True, "eval": e}
    return {**r, **over}


def test_the_glance_table_shows_each_condition_with_its_interval():
    held = {"mcd": True, "predicted_mos": False, "log_f0_rmse": True, "ffe": False, "vs_control": False}
    others = [glance_record(held, chosen_on_dev=False), {"system": "tacotron2", "eval": {"mcd": 10.0}},
              glance_record(held, eval=None), glance_record(held, eval={"mcd": 1.0})]  # older JSON: no conditions
    chosen = glance_record(held)
    chosen["eval"]["mcd"] = 9.5
    rows = verdict_at_a_glance(others + [chosen])
    assert len(rows) == 1
    row = rows[0]
    assert row["exp"] == "ebm_a" and row["setting"] == "1 step, lambda 0.6, sigma 0.0" and row["beats"] is False
    assert row["cells"] == [("-0.500 [-0.700, -0.300] (-5.0%)", True), ("-0.200 [-0.300, -0.100]", False),
                            ("+0.0010 [-0.0020, +0.0040]", True), ("NaN", False), ("+0.250 [+0.100, +0.400]", False)]
    # without a control the last condition is not judged, and the rest decide
    held = {"mcd": True, "predicted_mos": True, "log_f0_rmse": True, "ffe": True}
    (row,) = verdict_at_a_glance([glance_record(held, control=False, steps=3)])
    assert row["beats"] is True and row["cells"][-1] == ("-", None) and row["setting"].startswith("3 steps")
    # the dev-chosen control is shown beside the EBMs, judged on nothing; alone it makes no table
    ctl = {"system": "control_gv", "criterion": "variance x1.25", "chosen_on_dev": True,
           "eval": {"diff_vs_tacotron2_ci95": {"mcd": [-0.4, -0.5, -0.3], "predicted_mos": [0.1, 0.0, 0.2]}}}
    rows = verdict_at_a_glance([ctl, {**ctl, "chosen_on_dev": False}, glance_record(held)])
    assert [r["beats"] for r in rows] == [None, True] and rows[0]["setting"] == "control: Tacotron 2, variance x1.25"
    assert rows[0]["cells"][:3] == [("-0.400 [-0.500, -0.300]", None), ("+0.100 [+0.000, +0.200]", None), ("-", None)]
    assert verdict_at_a_glance([ctl]) == []
