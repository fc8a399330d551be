"""A kill while ESPnet's trainer writes checkpoint.pth never breaks resuming: before stages 3 and 5 train,
ebm.checkpoint moves an unloadable checkpoint aside and rebuilds one that ESPnet's trainer resumes from."""

import logging
import os

import pytest
import torch
import yaml

from conftest import run_module
from ebm.checkpoint import prepare_resume, stats_from_logs


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def _log_line(epoch, loss):
    return (f"2026-01-01 00:00:00,000 (trainer:338) INFO: {epoch}epoch results: [train] iter_time=1.234e-03, "
            f"loss={loss + 1:.3f}, train_time=0.012, time=0.05 seconds, total_count={2 * epoch}, "
            f"[valid] loss={loss:.3f}, time=0.01 seconds, total_count={2 * epoch}\n")


def training_dir(tmp_path, epochs=2, valid_losses=(2.0, 1.5, 1.7)):
    """An experiment directory as ESPnet's trainer leaves it after ``epochs`` epochs (keep every snapshot)."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml.safe_dump({"best_model_criterion": [["valid", "loss", "min"]]}))
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    stats = {}
    for e in range(1, epochs + 1):
        with torch.no_grad():
            model.weight.add_(1.0)  # each epoch's weights differ
        stats[e] = {"train": {"loss": valid_losses[e - 1] + 1, "total_count": 2 * e},
                    "valid": {"loss": valid_losses[e - 1], "total_count": 2 * e}}
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, exp / f"{e}epoch.pth")
    torch.save({"model": model.state_dict(), "reporter": {"epoch": epochs, "stats": stats},
                "optimizers": [opt.state_dict()], "schedulers": [None], "scaler": None}, exp / "checkpoint.pth")
    (exp / "train.1.log").write_text("".join(_log_line(e, valid_losses[e - 1]) for e in range(1, epochs)))
    (exp / "train.log").write_text(_log_line(epochs, valid_losses[epochs - 1]) + "# Ended (code 0)\n")
    os.symlink(f"{epochs}epoch.pth", exp / "latest.pth")
    best = min(range(1, epochs + 1), key=lambda e: valid_losses[e - 1])
    os.symlink(f"{best}epoch.pth", exp / "valid.loss.best.pth")
    return exp


def resume_as_espnet(exp):
    """What ESPnet's trainer does with --resume true: returns the reporter and the model it resumed."""
    from espnet2.train.reporter import Reporter
    from espnet2.train.trainer import Trainer

    model, reporter = _model(), Reporter()
    opt = torch.optim.Adam(model.parameters())
    Trainer.resume(checkpoint=exp / "checkpoint.pth", model=model, reporter=reporter, optimizers=[opt],
                   schedulers=[None], scaler=None, ngpu=0)
    return reporter, model


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_checkpoint_killed_mid_write_is_rebuilt_from_the_newest_snapshot(tmp_path, damage, caplog):
    exp = training_dir(tmp_path, epochs=3)
    data = (exp / "checkpoint.pth").read_bytes()
    (exp / "checkpoint.pth").write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with pytest.raises(Exception):
        resume_as_espnet(exp)  # today's failure: every re-run stops in torch.load
    os.remove(exp / "3epoch.pth")  # the kill came while epoch 3's checkpoint was written: no snapshot 3 yet
    with caplog.at_level(logging.WARNING):
        assert prepare_resume(exp) == 2
    assert (exp / "checkpoint.pth.corrupt").read_bytes() == (data[: len(data) // 2] if damage == "truncated" else b"")
    assert "checkpoint.pth does not load" in caplog.text and "resumes after epoch 2" in caplog.text
    reporter, model = resume_as_espnet(exp)
    assert reporter.get_epoch() == 2
    torch.testing.assert_close(model.state_dict(), torch.load(exp / "2epoch.pth"))
    assert reporter.get_best_epoch("valid", "loss", "min") == 2  # the statistics came back from the logs
    assert reporter.stats[1]["valid"]["total_count"] == 2
    assert os.readlink(exp / "latest.pth") == "2epoch.pth"
    assert os.readlink(exp / "valid.loss.best.pth") == "2epoch.pth"


def test_an_unloadable_snapshot_is_skipped_for_an_older_one(tmp_path, caplog):
    exp = training_dir(tmp_path, epochs=2)
    (exp / "checkpoint.pth").write_bytes(b"")
    (exp / "2epoch.pth").write_bytes((exp / "2epoch.pth").read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        assert prepare_resume(exp) == 1
    assert (exp / "2epoch.pth.corrupt").exists() and not (exp / "2epoch.pth").exists()
    reporter, model = resume_as_espnet(exp)
    assert reporter.get_epoch() == 1 and list(reporter.stats) == [1]
    assert os.readlink(exp / "valid.loss.best.pth") == "1epoch.pth"


def test_with_no_loadable_snapshot_training_starts_afresh_saying_so(tmp_path, caplog):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "checkpoint.pth").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert prepare_resume(exp) == 0
    assert not (exp / "checkpoint.pth").exists() and (exp / "checkpoint.pth.corrupt").exists()
    assert "training starts afresh from epoch 1" in caplog.text


def test_a_good_checkpoint_is_kept_and_the_files_written_after_it_restored(tmp_path):
    """Killed after checkpoint.pth of epoch 2 but before 2epoch.pth and its links: they are put back."""
    exp = training_dir(tmp_path, epochs=2)
    before = (exp / "checkpoint.pth").read_bytes()
    os.remove(exp / "2epoch.pth")
    os.remove(exp / "latest.pth")
    os.remove(exp / "valid.loss.best.pth")
    assert prepare_resume(exp) == 2
    assert (exp / "checkpoint.pth").read_bytes() == before
    assert not list(exp.glob("*.corrupt*"))
    torch.testing.assert_close(torch.load(exp / "2epoch.pth"), torch.load(exp / "checkpoint.pth")["model"])
    assert os.readlink(exp / "latest.pth") == "2epoch.pth" and os.readlink(exp / "valid.loss.best.pth") == "2epoch.pth"
    assert resume_as_espnet(exp)[0].get_epoch() == 2


def test_stats_from_rotated_logs_prefer_the_latest_run(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "train.2.log").write_text(_log_line(1, 3.0) + _log_line(2, 9.0))
    (exp / "train.1.log").write_text(_log_line(2, 2.5) + _log_line(3, 2.0))  # epoch 2 trained again
    stats = stats_from_logs(exp, last_epoch=2)
    assert list(stats) == [1, 2] and stats[2]["valid"]["loss"] == 2.5 and stats[1]["train"]["loss"] == 4.0
    assert "time" not in stats[1]["valid"] and stats[1]["train"]["iter_time"] == pytest.approx(1.234e-3)


def test_entry_point_warns_and_exits_zero(tmp_path):
    exp = training_dir(tmp_path, epochs=1)
    (exp / "checkpoint.pth").write_bytes(b"\x00" * 10)
    proc = run_module("ebm.bin.check_checkpoint", exp)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "checkpoint.pth.corrupt" in proc.stderr
    assert resume_as_espnet(exp)[0].get_epoch() == 1
    assert run_module("ebm.bin.check_checkpoint", tmp_path / "not_yet").returncode == 0  # a first training
