"""Stages 0-6 of the mini recipe on a 40-sentence cut of its corpus, with a 0.1M-parameter Tacotron 2 and EBM.

Tests the plumbing (ESPnet training and resuming, import, multi-mode decoding, the length report, the EBM task), not
the quality: a model trained for six steps never predicts its end, so every free-running decode is reported.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from espnet2.fileio.npy_scp import NpyScpReader

from conftest import REPO
from test_recipe_mini import copy_tree, read_ids, run_recipe

TINY = ["--train_config", str(REPO / "tests/data/train_tacotron2_tiny.yaml"),
        "--inference_config", str(REPO / "tests/data/decode_tacotron2_short.yaml"),
        "--local_data_opts", "--num_dev 5 --num_eval 5", "--gv_scales", ""]  # controls: their own test
EXP = "exp/tts_train_tacotron2_tiny"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    recipe = copy_tree(tmp_path_factory.mktemp("tree"))
    sentences = recipe / "local/sentences.txt"
    sentences.write_text("".join(sentences.read_text().splitlines(keepends=True)[:40]))
    proc = run_recipe(recipe, "--stage", "0", "--stop-stage", "4", "--baseline_num_samples", "1", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return recipe


def test_training_wrote_an_espnet_model(recipe):
    exp = recipe / EXP
    assert (exp / "train.loss.ave.pth").exists() and (exp / "config.yaml").exists()
    assert "# Ended (code 0)" in (exp / "train.log").read_text()


@pytest.mark.parametrize("mode", ["teacher_forced", "free_running", "free_running_sample1"])
def test_decodes_in_espnet_layout(recipe, mode, monkeypatch):
    monkeypatch.chdir(recipe)  # feats.scp paths are relative to the recipe, as in ESPnet
    refs = dict(l.split() for l in (recipe / "dump/raw/dev/utt2num_samples").read_text().splitlines())
    for sub in ["norm", "denorm"]:
        feats = NpyScpReader(str(recipe / EXP / f"decode_{mode}/dev/{sub}/feats.scp"))
        assert sorted(feats.keys()) == sorted(refs)
        for key in feats.keys():
            x = feats[key]
            assert x.ndim == 2 and x.shape[1] == 80 and np.all(np.isfinite(x))
            if mode == "teacher_forced":  # the reference's length (in frames of the centred STFT)
                assert abs(x.shape[0] - (int(refs[key]) // 256 + 1)) <= 2


def test_a_rerun_repeats_the_baseline_bit_for_bit(recipe, monkeypatch):
    """Stages 3-4 again, at the thread count the fixture ran at: the same weights and the same decodes, every one
    of them (the seeded decode and the prenet-dropout sample), so that a rerun of a recipe repeats its table."""
    proc = run_recipe(recipe, "--stage", "3", "--stop-stage", "4", "--baseline_num_samples", "1", *TINY,
                      "--tts_exp", "exp/tts_again")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch

    first, again = (torch.load(recipe / d / "train.loss.ave.pth", map_location="cpu") for d in (EXP, "exp/tts_again"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    monkeypatch.chdir(recipe)
    compared = 0
    for mode in ["teacher_forced", "free_running", "free_running_sample1"]:
        for dset in ["tr_no_dev", "dev", "eval1"]:
            a = NpyScpReader(f"{EXP}/decode_{mode}/{dset}/norm/feats.scp")
            b = NpyScpReader(f"exp/tts_again/decode_{mode}/{dset}/norm/feats.scp")
            assert sorted(a.keys()) == sorted(b.keys())
            for key in a.keys():
                assert np.array_equal(a[key], b[key]), f"{mode}/{dset}/{key}"
                compared += 1
    assert compared == 3 * 40


def test_stochastic_samples_differ_from_the_seeded_decode(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    a = NpyScpReader(str(recipe / EXP / "decode_free_running/dev/norm/feats.scp"))
    b = NpyScpReader(str(recipe / EXP / "decode_free_running_sample1/dev/norm/feats.scp"))
    key = sorted(a.keys())[0]
    n = min(len(a[key]), len(b[key]))
    assert not np.allclose(a[key][:n], b[key][:n])


def test_failed_decodes_are_reported(recipe):
    report = (recipe / EXP / "decode_free_running/eval1/length_report.txt").read_text().splitlines()
    ids = read_ids(recipe / "dump/raw/eval1/text")
    assert len(report) == len(ids)  # the untrained model runs every decode to the maximum length
    assert all(line.split()[1] == "max_length" for line in report)
    assert (recipe / EXP / "decode_teacher_forced/eval1/length_report.txt").read_text() == ""


def test_training_goes_on_past_the_rule_by_the_extension(recipe):
    """The rule (here one that fires at once: the dev loss no higher than its highest, patience 0) stops training at
    epoch E; --train_extend 3 trains on to 3E with the rule off, by way of 2E, where the models that the convergence
    check compares with are kept; a re-run trains nothing."""
    opts = ["--stage", "3", "--stop-stage", "3", *TINY, "--tts_exp", "exp/tts_extend", "--train_extend", "3",
            "--train_args", "--max_epoch 20 --patience 0 --early_stopping_criterion valid loss max"]
    proc = run_recipe(recipe, *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fired = re.search(r"the early-stopping rule fired at epoch (\d+) \(patience 0\); training on to 3 x \d+ = "
                      r"epoch (\d+), by way of epoch (\d+) \(the convergence check's model\): (\d+) of", proc.stderr)
    assert fired, proc.stderr[-3000:]
    e, target, check = int(fired.group(1)), int(fired.group(2)), int(fired.group(3))
    assert target == 3 * e and check == 2 * e and int(fired.group(4)) == e
    assert f"finished: the early-stopping rule fired at epoch {e}" in proc.stderr
    assert (recipe / "exp/tts_extend/train.loss.ave.pth").exists()
    # the models selected at 2E, kept before the training on to 3E replaced them
    at_two_thirds = recipe / "exp/tts_extend/at_two_thirds"
    assert (f"the models selected at epoch {check} are kept in exp/tts_extend/at_two_thirds for the convergence "
            "check") in proc.stderr
    assert (at_two_thirds / "epoch").read_text().strip() == str(check)
    assert (at_two_thirds / "train.loss.ave.pth").is_file() and not (at_two_thirds / "train.loss.ave.pth").is_symlink()
    import torch

    sd_kept = torch.load(at_two_thirds / "train.loss.ave.pth", map_location="cpu")
    sd_end = torch.load(recipe / "exp/tts_extend/train.loss.ave.pth", map_location="cpu")
    assert any(not torch.equal(sd_kept[k], sd_end[k]) for k in sd_end)  # trained on after the snapshot

    state = torch.load(recipe / "exp/tts_extend/checkpoint.pth", map_location="cpu", weights_only=False)
    assert state["reporter"]["epoch"] == target
    proc = run_recipe(recipe, *opts)
    assert proc.returncode == 0 and "not trained further" in proc.stderr

    # the convergence check: stage 4 decodes dev with the kept model too, and stage 7 compares the two there
    opts = [*TINY, "--tts_exp", "exp/tts_extend", "--baseline_num_samples", "0", "--results", "RESULTS_extend.md",
            "--griffin_lim_iters", "4"]
    proc = run_recipe(recipe, "--stage", "4", "--stop-stage", "4", *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (at_two_thirds / "decode_free_running/dev/denorm/feats.scp").is_file()
    assert not (at_two_thirds / "decode_free_running/eval1").exists()  # dev only: eval never chooses
    proc = run_recipe(recipe, "--stage", "7", "--stop-stage", "7", *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (recipe / "RESULTS_extend.md").read_text()
    section = md[md.index("## Is Tacotron 2 trained long enough? (dev)"):md.index("## All systems")]
    assert "`exp/tts_extend/at_two_thirds/decode_free_running`" in section and f"| epoch {check} |" in section
    assert len([line for line in section.splitlines() if line.startswith("| ") and "---" not in line]) == 1 + 5
    assert (at_two_thirds / "decode_free_running/dev/scores_griffin_lim.tsv").is_file()


def test_import_checks_the_baseline(recipe):
    model, config = recipe / EXP / "train.loss.ave.pth", recipe / EXP / "config.yaml"
    proc = run_recipe(recipe, "--stage", "3", "--stop-stage", "3", *TINY,
                      "--baseline_model_file", str(model), "--baseline_config", str(config))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (recipe / "exp/tts_imported/train.loss.ave.pth").resolve() == model.resolve()

    proc = run_recipe(recipe, "--stage", "3", "--stop-stage", "3", *TINY, "--n_mels", "40", "--fmax", "8000",
                      "--baseline_model_file", str(model), "--baseline_config", str(config))
    assert proc.returncode != 0
    assert "feats_extract_conf.n_mels: baseline 80, recipe 40" in proc.stderr
    assert "feats_extract_conf.fmax: baseline 7600, recipe 8000" in proc.stderr


def test_a_different_token_list_is_refused(recipe, tmp_path):
    config = tmp_path / "config.yaml"
    text = (recipe / EXP / "config.yaml").read_text().replace("- <space>\n", "- <spc>\n")
    config.write_text(text)
    proc = run_recipe(recipe, "--stage", "3", "--stop-stage", "3", *TINY,
                      "--baseline_model_file", str(recipe / EXP / "train.loss.ave.pth"),
                      "--baseline_config", str(config))
    assert proc.returncode != 0
    assert "token_list: baseline" in proc.stderr and "'<spc>'" in proc.stderr


EBM = ["--ebm_config", str(REPO / "tests/data/train_ebm_tiny.yaml"), "--ebm_streams", "teacher_forced"]
NO_LAMBDA_SWEEP = ["--ebm_decode_step_sizes", ""]  # run.sh sweeps the score model's lambdas; these use the config's
EBM_EXP = "exp/ebm_train_ebm_tiny"
POE = Path("exp/ebm_poe_train_ebm_tiny+train_ebm_tiny")  # the tiny EBM composed with itself (search grid)
POE_DECODE = "decode_langevin_steps2_lambda0.05_sigma0_w0.5_0.5_from_free_running"


@pytest.fixture(scope="module")
def ebm_recipe(recipe):
    """Stage 5 stopped after one epoch, then run again to two: the second run must resume, not restart."""
    proc = run_recipe(recipe, "--stage", "5", "--stop-stage", "5", *TINY, *EBM, "--ebm_args", "--max_epoch 1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (recipe / EBM_EXP / "checkpoint.pth").exists()
    proc = run_recipe(recipe, "--stage", "5", "--stop-stage", "5", *TINY, *EBM, "--ebm_args", "--max_epoch 2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return recipe


def test_ebm_training_resumes(ebm_recipe):
    exp = ebm_recipe / EBM_EXP
    log = (exp / "train.log").read_text()
    assert "2epoch results" in log and "1epoch results" not in log  # epoch 1 came from the checkpoint
    assert "1epoch results" in (exp / "train.1.log").read_text()
    assert (exp / "checkpoint.pth").exists() and (exp / "valid.refine_gain.best.pth").exists()


def test_a_resumed_training_repeats_an_uninterrupted_one_bit_for_bit(ebm_recipe):
    """ESPnet seeds every epoch, so at one thread count (path.sh: 1) the training stopped after epoch 1 and resumed
    ends with the weights of one that ran both epochs at once: a rerun at that thread count trains the same model."""
    opts = [*TINY, *EBM, "--ebm_exp", "exp/ebm_at_once", "--ebm_args", "--max_epoch 2"]
    proc = run_recipe(ebm_recipe, "--stage", "5", "--stop-stage", "5", *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch
    resumed, at_once = (
        torch.load(ebm_recipe / d / "checkpoint.pth", map_location="cpu", weights_only=False)["model"]
        for d in (EBM_EXP, "exp/ebm_at_once"))
    assert resumed.keys() == at_once.keys()
    assert all(torch.equal(resumed[k], at_once[k]) for k in resumed)
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in resumed.values())


def test_a_resume_at_another_thread_count_is_warned_about(ebm_recipe, monkeypatch):
    """The count a training began with is kept beside it; resuming at another one draws another model (above)."""
    opts = ["--stage", "5", "--stop-stage", "5", *TINY, *EBM, "--ebm_exp", "exp/ebm_threads"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    proc = run_recipe(ebm_recipe, *opts, "--ebm_args", "--max_epoch 1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (ebm_recipe / "exp/ebm_threads/threads").read_text() == "1\n"
    assert "began training at" not in proc.stderr
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    proc = run_recipe(ebm_recipe, *opts, "--ebm_args", "--max_epoch 2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exp/ebm_threads began training at OMP_NUM_THREADS=1 and resumes at 2" in proc.stderr
    assert "OMP_NUM_THREADS=1 ./run.sh" in proc.stderr
    assert (ebm_recipe / "exp/ebm_threads/threads").read_text() == "1\n"  # still the count it began with
    assert "2epoch results" in (ebm_recipe / "exp/ebm_threads/train.log").read_text()


def test_ebm_logs_per_negative_statistics(ebm_recipe):
    log = (ebm_recipe / EBM_EXP / "train.log").read_text()
    for key in ["binary_nce_acc_random_masking", "binary_nce_acc_teacher_forced", "binary_nce_acc_noisy_ref",
                "binary_nce_e_pos", "delta_loss", "refine_gain", "grad_rms"]:
        assert f"{key}=" in log, key


def test_ebm_builds_from_its_config_in_a_fresh_process(ebm_recipe):
    exp = ebm_recipe / EBM_EXP
    code = ("import sys, torch; from ebm.task import EBMTask\n"
            "m, _ = EBMTask.build_model_from_file(sys.argv[1], sys.argv[2], 'cpu')\n"
            "print(type(m.energy_network).__name__, sum(p.numel() for p in m.energy_network.parameters()))")
    proc = subprocess.run([sys.executable, "-c", code, str(exp / "config.yaml"), str(exp / "valid.refine_gain.best.pth")],
                          capture_output=True, text=True, cwd=ebm_recipe)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, count = proc.stdout.split()[-2:]
    assert name == "EnergyNetwork" and int(count) > 0


def test_ebm_trains_on_extra_free_running_hypotheses(recipe):
    """--ebm_train_hyps 1: stage 4's sample joins the seed-0 decode, one training entry per (text, hypothesis)."""
    opts = [*TINY, "--ebm_config", str(REPO / "tests/data/train_ebm_tiny.yaml"),
            "--ebm_streams", "teacher_forced free_running", "--ebm_exp", "exp/ebm_hyps", "--ebm_args", "--max_epoch 1"]
    proc = run_recipe(recipe, "--stage", "5", "--stop-stage", "5", *opts, "--ebm_train_hyps", "2")
    assert proc.returncode != 0  # stage 4 decoded one sample only
    assert "decode_free_running_sample2/tr_no_dev/denorm/feats.scp is missing" in proc.stderr
    assert "--baseline_num_samples 2" in proc.stderr
    proc = run_recipe(recipe, "--stage", "5", "--stop-stage", "5", *opts, "--ebm_train_hyps", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    texts = read_ids(recipe / "dump/raw/tr_no_dev/text")
    listed = [line.split()[0] for line in (recipe / "exp/ebm_hyps/train_hyps/fr_feats.scp").read_text().splitlines()]
    assert sorted(listed) == sorted(f"{u}-h{k}" for u in texts for k in (0, 1))
    config = yaml.safe_load((recipe / "exp/ebm_hyps/config.yaml").read_text())
    assert "exp/ebm_hyps/train_hyps/fr_feats.scp" in str(config["train_data_path_and_name_and_type"])
    assert "# Ended (code 0)" in (recipe / "exp/ebm_hyps/train.log").read_text()


def test_langevin_decoding_stage(ebm_recipe, monkeypatch):
    """Stage 6 sweep: 0 steps gives back the initial hypothesis; 2 steps record three energies per utterance."""
    proc = run_recipe(ebm_recipe, "--stage", "6", "--stop-stage", "6", *TINY, *EBM,
                      "--ebm_inference_config", str(REPO / "egs/mini_espeak/tts1/conf/decode_ebm.yaml"),
                      "--ebm_decode_steps", "0 2", *NO_LAMBDA_SWEEP)
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.chdir(ebm_recipe)
    init = NpyScpReader(f"{EXP}/decode_free_running/dev/denorm/feats.scp")
    same = NpyScpReader(f"{EBM_EXP}/decode_langevin_steps0_from_free_running/dev/denorm/feats.scp")
    moved = NpyScpReader(f"{EBM_EXP}/decode_langevin_steps2_from_free_running/dev/denorm/feats.scp")
    assert sorted(same.keys()) == sorted(init.keys()) == sorted(moved.keys())
    for key in init.keys():
        np.testing.assert_allclose(same[key], init[key], atol=1e-4)  # normalise, then denormalise
        assert moved[key].shape == init[key].shape and not np.allclose(moved[key], init[key])
    energies = (ebm_recipe / EBM_EXP / "decode_langevin_steps2_from_free_running/dev/energy").read_text()
    assert all(len(line.split()) == 1 + 3 for line in energies.splitlines())


@pytest.fixture(scope="module")
def results_recipe(ebm_recipe):
    """Stage 6 as above, then stage 7 with a short Griffin-Lim: the whole comparison on 5 + 5 utterances."""
    proc = run_recipe(ebm_recipe, "--stage", "6", "--stop-stage", "7", *TINY, *EBM,
                      "--ebm_inference_config", str(REPO / "egs/mini_espeak/tts1/conf/decode_ebm.yaml"),
                      "--ebm_decode_steps", "0 2", *NO_LAMBDA_SWEEP, "--griffin_lim_iters", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ebm_recipe


def verdict_text(md):
    return md[md.index("## Verdict"):md.index("## All systems")]


def test_evaluation_stage_writes_results(results_recipe):
    import json

    md = (results_recipe / "RESULTS.md").read_text()
    assert "| analysis-synthesis |" in md and "| Tacotron 2 |" in md and "ebm_train_ebm_tiny" in md
    assert "Tacotron 2** on 5 eval utterances" in md  # the verdict: "beats" or "does not beat"
    assert "On the frames voiced in the reference and in both systems, log-F0 RMSE" in md
    glance = [line for line in verdict_text(md).splitlines() if line.startswith("| `ebm_")]  # the verdict's table
    assert glance and all(line.endswith((" | no |", " | **yes** |")) for line in glance), glance
    records = json.loads((results_recipe / "RESULTS.json").read_text())
    assert [r["system"] for r in records] == ["analysis-synthesis", "tacotron2", "ebm", "ebm"]
    ebm = [r for r in records if r["system"] == "ebm"]
    assert sorted(r["steps"] for r in ebm) == [0, 2] and sum(r["chosen_on_dev"] for r in ebm) == 1
    # eval only reports: it is vocoded and scored at the setting dev chose, the other setting has dev numbers only
    assert [r["eval"] is not None for r in ebm] == [r["chosen_on_dev"] for r in ebm]
    other = next(r for r in ebm if not r["chosen_on_dev"])
    assert other["mcd"] is None and other["dev"]["mcd"] > 0
    assert not (results_recipe / EBM_EXP / other["decode"] / "eval1/wav_griffin_lim").exists()
    records = [r for r in records if r["eval"] is not None]
    for r in records:
        for key in ("mcd", "log_f0_rmse", "ffe"):
            assert np.isfinite(r[key]) or key == "log_f0_rmse", (r["system"], key)
        assert r["vocoder"] == "griffin_lim"
    chosen = next(r for r in ebm if r["chosen_on_dev"])
    assert chosen["eval"]["common_voiced_f0"]["n_utts"] == 5
    # the pitch conditions carry the paired interval the MCD has: per-utterance differences from Tacotron 2
    assert re.search(r"FFE [0-9.]+ vs [0-9.]+ \(difference [+-][0-9.]+, 95% interval \[", md)
    ffe_diff, lo, hi = chosen["eval"]["ffe_diff_ci95"]
    assert lo <= ffe_diff <= hi and abs(ffe_diff - (chosen["ffe"] - records[1]["ffe"])) < 1e-3
    assert len(chosen["eval"]["log_f0_rmse_diff_ci95"]) == 3
    steps0 = next(r for r in ebm if r["steps"] == 0)
    base = records[1]
    assert abs(steps0["dev"]["mcd"] - base["dev"]["mcd"]) < 0.05  # 0 steps: Tacotron 2's output, the same path
    assert steps0["dev"]["rtf"] > base["dev"]["rtf"] > 0  # an EBM's RTF includes Tacotron 2's
    scores = (results_recipe / EBM_EXP / chosen["decode"] / "eval1/scores_griffin_lim.tsv")
    lines = scores.read_text().splitlines()
    assert lines[0].split("\t") == ["utt", "mcd", "log_f0_rmse", "vde", "gpe", "ffe", "mel_distance",
                                    "mcd_silence_share", "predicted_mos"] and len(lines) == 6
    # the measures a vocoder cannot game: in every row, each with its difference from Tacotron 2 and its interval
    assert "## Measures a vocoder cannot game (eval)" in md and "predicted MOS" in verdict_text(md)
    for r in records:
        assert 1.0 <= r["predicted_mos"] <= 5.0 and r["mel_distance"] >= 0 and 0 <= r["mcd_silence_share"] <= 1
        if r["system"] != "tacotron2" and r["eval"] is not None:
            assert all(len(r["eval"]["diff_vs_tacotron2_ci95"][k]) == 3
                       for k in ("predicted_mos", "mel_distance", "mcd_silence_share")), r["system"]
    assert records[0]["mel_distance"] == 0.0  # analysis-synthesis: the reference's own mel
    assert steps0["dev"]["mel_distance"] == pytest.approx(base["dev"]["mel_distance"], abs=0.05)  # Tacotron 2's mel
    plots = sorted(p.name for p in (results_recipe / "exp/results_griffin_lim").glob("*.png"))
    assert "metrics_vs_steps.png" in plots and "energy_vs_step.png" in plots and len(plots) == 5


def test_evaluation_stage_reruns_only_what_changed(results_recipe):
    proc = run_recipe(results_recipe, "--stage", "7", "--stop-stage", "7", *TINY, *EBM, "--griffin_lim_iters", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("is up to date") == 2 * (4 + 3)  # (wavs, scores) x (4 systems on dev + 3 on eval)
    assert "vocoding" not in proc.stderr


def test_evaluation_compares_with_the_variance_scaling_control(results_recipe):
    """--gv_scales adds Tacotron 2 sharpened without text or energy: its rows, its dev choice, and every verdict
    against it; a rerun makes nothing again."""
    import json

    opts = [*TINY, *EBM, "--griffin_lim_iters", "4", "--gv_scales", "1.5 2"]
    proc = run_recipe(results_recipe, "--stage", "7", "--stop-stage", "7", *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("with its variance scaled by") == 2 * 2
    # only the controls are new: both on dev, the one dev chose on eval
    assert proc.stderr.count("Stage 7: scoring 2 systems on dev") == 1
    assert proc.stderr.count("Stage 7: scoring 1 systems on eval1") == 1
    evaluated = [s for s in ("1.5", "2")
                 if (results_recipe / EXP / f"decode_free_running_gv{s}/eval1/wav_griffin_lim/wav.scp").is_file()]
    assert len(evaluated) == 1
    md = (results_recipe / "RESULTS.md").read_text()
    all_systems = md[md.index("## All systems"):md.index("## Measures a vocoder cannot game")]
    rows = [line for line in all_systems.splitlines() if "(control)" in line]
    assert len(rows) == 2 and sum(line.startswith("| **") for line in rows) == 1
    assert "Against the control (variance x" in md and "- control: Tacotron 2 with its variance x" in md
    records = json.loads((results_recipe / "RESULTS.json").read_text())
    controls = [r for r in records if r["system"] == "control_gv"]
    assert sorted(r["scale"] for r in controls) == [1.5, 2.0] and sum(r["chosen_on_dev"] for r in controls) == 1
    assert [f'{r["scale"]:g}' for r in controls if r["chosen_on_dev"]] == evaluated
    assert min(controls, key=lambda r: r["dev"]["mcd"])["chosen_on_dev"]  # the control: the lowest dev MCD
    assert all(r["dev"]["rtf"] == records[1]["dev"]["rtf"] for r in controls)  # its cost is Tacotron 2's
    chosen = [r for r in records if r["system"] == "ebm" and r["chosen_on_dev"] and r["eval"]]
    assert chosen and all(len(r["eval"]["mcd_diff_vs_control_ci95"]) == 3 for r in chosen)
    proc = run_recipe(results_recipe, "--stage", "7", "--stop-stage", "7", *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "variance scaled" not in proc.stderr and "vocoding" not in proc.stderr
    assert proc.stderr.count("is up to date") == 2 * (6 + 4)  # (wavs, scores) x (6 systems on dev + 4 on eval)


def test_evaluation_rescores_with_another_f0_range(results_recipe):
    """--f0max changes the metric, not the audio: every system is rescored, nothing is vocoded again, the table
    states the range, and a table made for another range than the scores' is refused."""
    proc = run_recipe(results_recipe, "--stage", "7", "--stop-stage", "7", *TINY, *EBM, "--griffin_lim_iters", "4",
                      "--f0max", "400")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("is up to date") == 4 + 3  # the wavs only (4 systems on dev, 3 on eval)
    assert proc.stderr.count("Stage 7: scoring 4 systems on dev") == 1 and "vocoding" not in proc.stderr
    assert proc.stderr.count("Stage 7: scoring 3 systems on eval1") == 1
    assert "WORLD harvest searching 40-400 Hz" in (results_recipe / "RESULTS.md").read_text()
    settings = results_recipe / EXP / "decode_free_running/eval1/scores_griffin_lim.settings"
    assert settings.read_text().split()[-4:] == ["--f0min", "40", "--f0max", "400"]
    assert "--n_shift 256" in settings.read_text() and "--n_mels 80" in settings.read_text()
    proc = subprocess.run([sys.executable, "-m", "ebm.bin.make_results", "--dev_set", "dev", "--eval_set", "eval1",
                           "--vocoder_tag", "griffin_lim", "--ground_truth", "exp/analysis_synthesis",
                           "--baseline", f"{EXP}/decode_free_running", "--output_md", "x.md", "--output_json",
                           "x.json", "--plot_dir", "x"], capture_output=True, text=True, cwd=results_recipe)
    assert proc.returncode != 0 and "was scored with --f0max 400, but this table is for --f0max 800" in proc.stderr
    assert not (results_recipe / "x.md").exists()


def test_evaluation_refuses_a_mismatching_vocoder(results_recipe, tmp_path):
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "checkpoint-1steps.pkl").write_bytes(b"")
    (voc / "stats.h5").write_bytes(b"")
    (voc / "config.yml").write_text("sampling_rate: 24000\nfft_size: 1024\nhop_size: 256\nwin_length: 1024\n"
                                    "num_mels: 80\nfmin: 40\nfmax: 7600\n")
    proc = run_recipe(results_recipe, "--stage", "7", "--stop-stage", "7", *TINY, *EBM,
                      "--vocoder_file", str(voc / "checkpoint-1steps.pkl"))
    assert proc.returncode != 0
    assert "sampling_rate=24000 but the recipe's --fs is 22050" in proc.stderr
    assert not list((results_recipe / "exp").glob("**/wav_pwg_voc/wav.scp"))


def test_synthesis_from_text(results_recipe, tmp_path):
    import soundfile as sf

    from conftest import run_module

    tts, ebm = results_recipe / EXP, results_recipe / EBM_EXP
    common = ["--tts_config", tts / "config.yaml", "--tts_model", tts / "train.loss.ave.pth",
              "--tts_inference_config", REPO / "tests/data/decode_tacotron2_short.yaml",
              "--ebm_config", ebm / "config.yaml", "--ebm_model", ebm / "valid.refine_gain.best.pth",
              "--langevin_config", REPO / "egs/mini_espeak/tts1/conf/decode_ebm.yaml", "--steps", "2"]
    run_module("ebm.bin.synthesize", *common, "--text", "The cat sat.", "--output", tmp_path / "a.wav",
               cwd=results_recipe, check=True)
    wav, fs = sf.read(tmp_path / "a.wav")
    assert fs == 22050 and len(wav) > 256 and np.isfinite(wav).all()
    proc = run_module("ebm.bin.synthesize", *common, "--text", "meet @ home ~", "--output", tmp_path / "b.wav",
                      cwd=results_recipe)
    assert proc.returncode == 1 and "outside the model's token list" in proc.stderr
    assert not (tmp_path / "b.wav").exists()


def test_search_chooses_on_dev_then_decodes_eval_once(results_recipe):
    """search.sh: every grid setting decoded and scored on dev only; eval decoded at the dev choice alone, with the
    settings its dev decode wrote (settings.yaml, not its directory name). A drift_min_bin= field (old spelling
    minbin=) sweeps the first mel bin the drift moves, named in the decode dir and logged."""
    import json

    for old in (results_recipe / EBM_EXP).glob("decode_langevin*"):  # the stage 6-7 tests' decodes
        shutil.rmtree(old)
    grid = results_recipe / "conf/search_tiny.txt"
    tiny = f"{REPO}/tests/data/train_ebm_tiny.yaml"
    grid.write_text("# tiny grid, and the EBM composed with itself (a product of experts, sixth field)\n"
                    f"{tiny} {REPO}/egs/mini_espeak/tts1/conf/decode_ebm.yaml 1,2 0.01,0.05 0\n"
                    f"{tiny} {REPO}/egs/mini_espeak/tts1/conf/decode_ebm.yaml 2 0.05 0 0.5+{tiny}:0.5\n"
                    f"{tiny} {REPO}/egs/mini_espeak/tts1/conf/decode_ebm.yaml 1 0.05 0 drift_min_bin=3\n")
    proc = subprocess.run(["./search.sh", "--grid", str(grid), *TINY, "--ebm_streams", "teacher_forced",
                           "--ebm_args", "--max_epoch 2", "--griffin_lim_iters", "4"],
                          cwd=results_recipe, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dirs = sorted(p.name for p in (results_recipe / EBM_EXP).glob("decode_langevin*"))
    assert dirs == sorted([f"decode_langevin_steps{s}_lambda{l}_sigma0_from_free_running"
                           for s in (1, 2) for l in ("0.01", "0.05")]
                          + ["decode_langevin_steps1_lambda0.05_sigma0_minbin3_from_free_running"])
    with_eval = [d for d in dirs if (results_recipe / EBM_EXP / d / "eval1").is_dir()]
    assert len(with_eval) == 1 and all((results_recipe / EBM_EXP / d / "dev").is_dir() for d in dirs)
    log = (results_recipe / "RESULTS_search.tsv").read_text().splitlines()
    head = log[0].split("\t")
    assert "dev_mcd" in head and not any(h.startswith("eval") for h in head) and len(log) == 1 + 5 + 1
    rows = [dict(zip(head, line.split("\t"))) for line in log[1:] if not line.startswith("ebm_poe_")]
    assert sorted(r["min_bin"] for r in rows) == ["0"] * 4 + ["3"]
    chosen = [r for r in rows if r["chosen_on_dev"] == "True"]
    assert len(chosen) == 1
    if any(r["passes_on_dev"] == "True" for r in rows):
        assert chosen[0]["passes_on_dev"] == "True" and float(chosen[0]["dev_mcd"]) == min(
            float(r["dev_mcd"]) for r in rows if r["passes_on_dev"] == "True")
    assert chosen[0]["criteria"].startswith("binary_nce") and chosen[0]["pooling"] in ("attention", "mean", "sum")
    steps, lam, min_bin = re.match(r"decode_langevin_steps(\d+)_lambda([\d.]+)_sigma0_(?:minbin(\d+)_)?from",
                                   with_eval[0]).groups()
    assert (int(steps), float(lam), int(min_bin or 0)) == (int(chosen[0]["steps"]), float(chosen[0]["lambda"]),
                                                           int(chosen[0]["min_bin"]))
    records = json.loads((results_recipe / "RESULTS.json").read_text())
    ebm = [r for r in records if r["system"] == "ebm"]
    assert len(ebm) == 5 + 1 and sum(r["eval"] is not None for r in ebm) == 1 + 1
    assert (results_recipe / POE / POE_DECODE / "eval1/denorm/feats.scp").is_file()  # its one setting, chosen
    md = (results_recipe / "RESULTS.md").read_text()
    assert "Tacotron 2** on 5 eval utterances" in md
    assert "| sigma | min bin |" in md and "| 0.0500 | 0.00 | 3 |" in md  # the band-limited row tells itself apart


def test_product_of_experts_decoding(results_recipe, monkeypatch):
    """--ebm_experts (here from the search test's sixth grid field): an EBM composed with itself at weights 0.5 +
    0.5 is that EBM, so its chain is the plain one; the composition has its own exp dir and rows, names its
    weights, and bad expert lists are refused."""
    monkeypatch.chdir(results_recipe)  # feats.scp paths are relative to the recipe
    plain = f"{EBM_EXP}/decode_langevin_steps2_lambda0.05_sigma0_from_free_running/dev/denorm/feats.scp"
    poe = results_recipe / POE / POE_DECODE
    a, b = NpyScpReader(plain), NpyScpReader(str(POE / POE_DECODE / "dev/denorm/feats.scp"))
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        np.testing.assert_allclose(b[key], a[key], atol=1e-4)
    settings = yaml.safe_load((poe / "settings.yaml").read_text())
    assert [e["weight"] for e in settings["experts"]] == [0.5, 0.5]
    assert settings["criterion"].startswith("0.5*(binary_nce") and " + 0.5*(" in settings["criterion"]
    md = (results_recipe / "RESULTS.md").read_text()
    assert f"EBM `{POE.name}`** | 0.5*(binary_nce" in md  # its own row, its one setting chosen on dev
    opts = [*TINY, *EBM, "--ebm_decode_steps", "2", "--ebm_decode_sets", "dev"]
    for bad, error in ((EBM_EXP, "takes EXPDIR:WEIGHT items"), ("exp/nowhere:0.3", "no expert EBM at")):
        proc = run_recipe(results_recipe, "--stage", "6", "--stop-stage", "6", *opts, "--ebm_experts", bad)
        assert proc.returncode != 0 and error in proc.stderr


def test_listening_page_and_tensorboard_curves(results_recipe):
    """Stage 7 writes exp/results_<vocoder>/index.html: the table, the verdict, one section per eval utterance with
    a player per system, every link relative and resolving. Stages 3 and 5 write tensorboard curves, the EBM's own
    statistics among them."""
    import urllib.parse

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_listening_page import parse

    page = results_recipe / "exp/results_griffin_lim/index.html"
    p = parse(page)
    assert "table" in p.tags and "Tacotron 2" in " ".join(p.verdict_text.split())
    rows = [row for row in p.glance if row]  # the verdict's table: a row per chosen EBM (a product of experts'
    assert rows and all(len(row) == 7 and row[0][1].startswith("ebm_") for row in rows), rows  # too, once run)
    assert [s["id"] for s in p.sections] == sorted(read_ids(results_recipe / "dump/raw/eval1/text"))
    for s in p.sections:  # recording, analysis-synthesis, Tacotron 2 and at least one EBM
        assert s["audio"] >= 4 and s["img"] == s["audio"], s
        assert s["labels"][:3] == ["recording", "analysis-synthesis (griffin_lim)", "Tacotron 2"], s["labels"]
        assert any(label.startswith("EBM ebm_train_ebm_tiny:") for label in s["labels"]), s["labels"]
    assert len(p.links) >= 5 * 4 * 2
    for link in p.links:
        assert "://" not in link and not link.startswith("/"), link
        assert (page.parent / urllib.parse.unquote(link)).is_file(), link
    for exp in (EXP, EBM_EXP):
        assert list((results_recipe / exp / "tensorboard").glob("*/events.out.tfevents.*")), exp
    acc = EventAccumulator(str(results_recipe / EBM_EXP / "tensorboard/valid")).Reload()
    assert {"refine_gain", "binary_nce_e_pos", "binary_nce_acc_teacher_forced"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("refine_gain")) >= 1
