"""Stages 0-6 of the mini recipe on a 40-sentence cut of its corpus, with a 0.1M-parameter Tacotron 2 and EBM.

Tests the plumbing (ESPnet training and resuming, import, multi-mode decoding, the length report, the EBM task), not
the quality: a model trained for six steps never predicts its end, so every free-running decode is reported.
"""

import subprocess
import sys

import numpy as np
import pytest
from espnet2.fileio.npy_scp import NpyScpReader

from conftest import REPO
from test_recipe_mini import copy_tree, read_ids, run_recipe

TINY = ["--train_config", str(REPO / "tests/data/train_tacotron2_tiny.yaml"),
        "--inference_config", str(REPO / "tests/data/decode_tacotron2_short.yaml"),
        "--local_data_opts", "--num_dev 5 --num_eval 5"]
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
    assert (exp / "valid.loss.ave.pth").exists() and (exp / "config.yaml").exists()
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


def test_import_checks_the_baseline(recipe):
    model, config = recipe / EXP / "valid.loss.ave.pth", recipe / EXP / "config.yaml"
    proc = run_recipe(recipe, "--stage", "3", "--stop-stage", "3", *TINY,
                      "--baseline_model_file", str(model), "--baseline_config", str(config))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (recipe / "exp/tts_imported/valid.loss.ave.pth").resolve() == model.resolve()

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
                      "--baseline_model_file", str(recipe / EXP / "valid.loss.ave.pth"),
                      "--baseline_config", str(config))
    assert proc.returncode != 0
    assert "token_list: baseline" in proc.stderr and "'<spc>'" in proc.stderr


EBM = ["--ebm_config", str(REPO / "tests/data/train_ebm_tiny.yaml"), "--ebm_streams", "teacher_forced"]
EBM_EXP = "exp/ebm_train_ebm_tiny"


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


def test_langevin_decoding_stage(ebm_recipe, monkeypatch):
    """Stage 6 sweep: 0 steps gives back the initial hypothesis; 2 steps record three energies per utterance."""
    proc = run_recipe(ebm_recipe, "--stage", "6", "--stop-stage", "6", *TINY, *EBM,
                      "--ebm_inference_config", str(REPO / "egs/mini_espeak/tts1/conf/decode_ebm.yaml"),
                      "--ebm_decode_steps", "0 2")
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
