"""Converged baselines: which rule ended a training, and a re-run of a finished one trains nothing."""

import os

import torch

from conftest import run_module
from ebm.early_stopping import rule_epoch, state_of, trainer_options


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
    opts = trainer_options(conf, "--early_stopping_criterion valid loss max --patience 0")
    assert opts["early_stopping_criterion"] == ["valid", "loss", "max"] and opts["patience"] == 0


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


def test_the_rule_fires_where_the_trainer_would_have_stopped():
    # best 3 at epoch 3; epoch 6 is the first more than 2 epochs after it; the later, better 2.9 does not move it
    losses = [5, 4, 3, 3.5, 3.4, 3.3, 2.9, 3.0]
    assert rule_epoch(_reporter(losses), patience=2) == 6
    assert rule_epoch(_reporter(losses[:5]), patience=2) is None
    assert rule_epoch(_reporter(losses), patience=None) is None


def test_extension_trains_on_to_the_stated_multiple_of_the_rule_epoch():
    losses = [5, 4, 3, 3.5, 3.4, 3.3]  # the rule fires at epoch 6: 1.5 x 6 = 9
    st = state_of(_reporter(losses), max_epoch=100, patience=2, extend=1.5)
    assert not st.finished and st.extend_to == 9 and "epoch 9" in st.reason
    # a better dev loss during the extension neither restarts the rule nor moves the target
    st = state_of(_reporter(losses + [2.5, 2.6]), max_epoch=100, patience=2, extend=1.5)
    assert not st.finished and st.extend_to == 9
    st = state_of(_reporter(losses + [2.5, 2.6, 2.7]), max_epoch=100, patience=2, extend=1.5)
    assert st.finished and st.extend_to is None and "finished" in st.reason and "best valid.loss at epoch 7" in st.reason
    # the cap still bounds it, and says so
    st = state_of(_reporter(losses), max_epoch=8, patience=2, extend=1.5)
    assert st.extend_to == 8 and "max_epoch cap" in st.reason
    # before the rule fires, the extension changes nothing
    st = state_of(_reporter(losses[:5]), max_epoch=100, patience=2, extend=1.5)
    assert not st.finished and st.extend_to is None


def test_a_longer_extension_stops_on_its_way_where_the_convergence_check_model_is_kept():
    """2.25 x 6 = 13.5, so on to 14; the check's model at floor(14 / 1.5) = 9, so that 14 is at least 50% longer."""
    losses = [5, 4, 3, 3.5, 3.4, 3.3]  # the rule fires at epoch 6
    st = state_of(_reporter(losses), max_epoch=100, patience=2, extend=2.25)
    assert not st.finished and st.extend_to == 9 and st.check_epoch == 9 and "by way of epoch 9" in st.reason
    st = state_of(_reporter(losses + [3.2] * 2), max_epoch=100, patience=2, extend=2.25)  # killed at 8: on to 9
    assert st.extend_to == 9
    st = state_of(_reporter(losses + [3.2] * 3), max_epoch=100, patience=2, extend=2.25)
    assert not st.finished and st.extend_to == 14 and st.check_epoch == 9
    st = state_of(_reporter(losses + [3.2] * 8), max_epoch=100, patience=2, extend=2.25)
    assert st.finished and st.check_epoch == 9
    # 1.5 x 6 = 9: the check's model is the rule's own (floor(9 / 1.5) = 6), no stop on the way
    st = state_of(_reporter(losses), max_epoch=100, patience=2, extend=1.5)
    assert st.check_epoch == 6 and st.extend_to == 9 and "by way of" not in st.reason
    # under 1.5 the training on is shorter than 50%: the check's model is still the rule's
    st = state_of(_reporter(losses), max_epoch=100, patience=2, extend=1.2)
    assert st.check_epoch == 6 and st.extend_to == 8


def test_entry_point_prints_the_options_that_extend_the_training(tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text("max_epoch: 500\npatience: 1\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save({"reporter": _reporter([3, 2, 2.5, 2.6])}, exp / "checkpoint.pth")  # fires at 4: on to 6
    # the trainer averages its models after its last checkpoint; with one model kept, the average is a link to the
    # best epoch's file, which may be older than the checkpoint
    (exp / "3epoch.pth").write_bytes(b"")
    os.utime(exp / "3epoch.pth", (900, 900))
    os.utime(exp / "checkpoint.pth", (1000, 1000))
    (exp / "train.loss.ave.pth").symlink_to("3epoch.pth")
    os.utime(exp / "train.loss.ave.pth", (1001, 1001), follow_symlinks=False)
    proc = run_module("ebm.bin.training_state", "--exp", exp, "--config", conf, "--extend", "1.5", check=True)
    status, reason, more, keep = proc.stdout.rstrip("\n").split("\t")
    assert status == "continue" and "epoch 6" in reason and more == "--max_epoch 6 --patience none"
    assert keep == "4"  # the models on disk are the rule's, the check's model: keep them before training on
    # killed before the trainer averaged (the averages are an earlier run's): a run to epoch 4 writes them first
    os.utime(exp / "train.loss.ave.pth", (999, 999), follow_symlinks=False)
    proc = run_module("ebm.bin.training_state", "--exp", exp, "--config", conf, "--extend", "1.5", check=True)
    status, reason, more, keep = proc.stdout.rstrip("\n").split("\t")
    assert status == "continue" and "predate its epoch-4 checkpoint" in reason
    assert more == "--max_epoch 4 --patience none" and keep == ""
    (exp / "train.loss.ave.pth").unlink()  # none at all: the same
    proc = run_module("ebm.bin.training_state", "--exp", exp, "--config", conf, "--extend", "1.5", check=True)
    assert proc.stdout.rstrip("\n").split("\t")[2:] == ["--max_epoch 4 --patience none", ""]
    # 3 x 4: on to 12 by way of 8, where the check's model is kept; the models on disk now are not it
    proc = run_module("ebm.bin.training_state", "--exp", exp, "--config", conf, "--extend", "3", check=True)
    status, reason, more, keep = proc.stdout.rstrip("\n").split("\t")
    assert more == "--max_epoch 8 --patience none" and keep == ""
    proc = run_module("ebm.bin.training_state", "--exp", exp, "--config", conf, "--extend", "0.5")
    assert proc.returncode == 1 and "--extend 0.5" in proc.stderr
