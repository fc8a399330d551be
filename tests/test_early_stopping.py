"""Converged baselines: which rule ended a training, and a re-run of a finished one trains nothing."""

import torch

from conftest import run_module
from ebm.early_stopping import state_of, trainer_options


def _reporter(losses):
    """ESPnet's reporter state after len(losses) epochs of these dev losses."""
    stats = {e: {"valid": {"loss": v}, "train": {"loss": v + 1}} for e, v in enumerate(losses, start=1)}
    return {"epoch": len(losses), "stats": stats}


def test_the_early_stopping_rule_ends_training():
    st = state_of(_reporter([5, 4, 3, 3.5, 3.4, 3.3]), max_epoch=100, patience=2)
    assert st.finished and st.best_epoch == 3 and "early-stopping rule at epoch 6" in st.reason


def test_within_patience_training_goes_on():
    st = state_of(_reporter([5, 4, 3, 3.5, 3.4]), max_epoch=100, patience=2)
    assert not st.finished and st.epoch == 5 and st.best_epoch == 3


def test_the_cap_is_named_when_it_and_not_the_rule_ended_training():
    st = state_of(_reporter([5, 4, 3]), max_epoch=3, patience=10)
    assert st.finished and "epoch cap" in st.reason and "raise max_epoch" in st.reason
    assert not state_of(_reporter([5, 4, 3]), max_epoch=4, patience=None).finished


def test_command_line_options_override_the_config(tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text("max_epoch: 500\npatience: 10\n")
    assert trainer_options(conf)["max_epoch"] == 500
    opts = trainer_options(conf, "--max_epoch 4 --num_iters_per_epoch 2 --patience=none")
    assert opts["max_epoch"] == 4 and opts["patience"] is None
    assert opts["early_stopping_criterion"] == ["valid", "loss", "min"]


def test_entry_point_reads_the_checkpoint(tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text("max_epoch: 500\npatience: 1\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    proc = run_module("ebm.bin.training_state", "--exp", exp, "--config", conf, check=True)
    assert proc.stdout.startswith("continue\tno ")
    torch.save({"reporter": _reporter([3, 2, 2.5, 2.6])}, exp / "checkpoint.pth")
    proc = run_module("ebm.bin.training_state", "--exp", exp, "--config", conf, check=True)
    assert proc.stdout.startswith("finished\tstopped by the early-stopping rule at epoch 4")
    torch.save({"model": {}}, exp / "checkpoint.pth")
    proc = run_module("ebm.bin.training_state", "--exp", exp, "--config", conf)
    assert proc.returncode == 1 and "checkpoint.pth holds no trainer state" in proc.stderr
