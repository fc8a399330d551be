"""Configs and outputs that used to slip through Langevin decoding: numbers PyYAML reads as strings, values that are
no numbers, and a chain whose output left the normalised range, which is refused before anything looks written."""

import contextlib
import io

import numpy as np
import pytest
import torch
import yaml

from ebm.bin import langevin_decode

TOKENS = ["<blank>", "<unk>", "<space>", *"abcdefghijklmnopqrstuvwxyz", ".", "<sos/eos>"]
N_MELS = 8
TEXTS = {"u1": "a cab.", "u2": "hi there"}
NO_GUARDS = "steps: 3\nstep_size: 1.0e6\nsigma: 0\nnormalize_grad: false\nupdate_clip: null\nmax_abs: null\n" \
            "divergence_factor: null\n"


@pytest.fixture(scope="module")
def ebm_files(tmp_path_factory):
    """A random tiny EBM (config.yaml + model.pth, as stage 5 writes them), its texts and initial hypotheses."""
    with contextlib.redirect_stdout(io.StringIO()):
        from ebm.task import EBMTask
    tmp = tmp_path_factory.mktemp("ebm")
    stats = tmp / "feats_stats.npz"
    np.savez(stats, count=np.array(100), sum=np.full(N_MELS, -300.0), sum_square=np.full(N_MELS, 100 * 10.0))
    args = EBMTask.get_parser().parse_args([])
    args.token_list, args.token_type, args.cleaner, args.g2p = TOKENS, "char", None, None
    args.feats_extract_conf = dict(fs=8000, n_fft=128, hop_length=32, win_length=None, n_mels=N_MELS, fmin=0,
                                   fmax=4000)
    args.normalize_conf = dict(stats_file=str(stats))
    args.energy_network_conf = dict(adim=8, aheads=2, elayers=1, eunits=16, dlayers=1, dunits=16, prenet_layers=1,
                                    prenet_chans=8, head_units=8)
    torch.manual_seed(0)
    model = EBMTask.build_model(args)
    torch.save(model.state_dict(), tmp / "model.pth")
    with open(tmp / "config.yaml", "w") as f:
        yaml.safe_dump(vars(args), f)
    (tmp / "text").write_text("".join(f"{k} {t}\n" for k, t in TEXTS.items()))
    rng = np.random.default_rng(0)
    with open(tmp / "feats.scp", "w") as f:
        for k, n in (("u1", 12), ("u2", 17)):
            np.save(tmp / f"{k}.npy", (rng.normal(size=(n, N_MELS)) - 3).astype(np.float32))
            f.write(f"{k} {tmp / f'{k}.npy'}\n")
    return tmp


def decode(ebm_files, out, config_text, capsys):
    cfg = out.parent / f"{out.name}.yaml"
    cfg.write_text(config_text)
    argv = ["--model_file", str(ebm_files / "model.pth"), "--train_config", str(ebm_files / "config.yaml"),
            "--config", str(cfg), "--text", str(ebm_files / "text"), "--init_scp", str(ebm_files / "feats.scp"),
            "--output_dir", str(out)]
    code = 0
    try:
        langevin_decode.run(langevin_decode.main, argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err, cfg


def test_a_chain_with_every_guard_off_is_refused_before_writing(ebm_files, tmp_path, capsys):
    """step_size 1.0e6 (a string to PyYAML) runs, and the far-out mel it makes is refused naming utterance and fix."""
    code, err, cfg = decode(ebm_files, tmp_path / "off", NO_GUARDS, capsys)
    assert code == 1, err
    assert "ERROR: utterance u" in err and "normalised" in err
    assert f"max_abs (e.g. 10) in the decode config {cfg}" in err
    assert "TypeError" not in err
    assert not (tmp_path / "off/norm/feats.scp").exists() and not (tmp_path / "off/denorm/feats.scp").exists()
    assert not (tmp_path / "off/settings.yaml").exists()


def test_the_guard_the_error_names_makes_the_same_config_work(ebm_files, tmp_path, capsys):
    code, err, _ = decode(ebm_files, tmp_path / "on", NO_GUARDS.replace("max_abs: null", "max_abs: 10"), capsys)
    assert code in (0, None), err
    out = tmp_path / "on"
    assert len((out / "norm/feats.scp").read_text().splitlines()) == 2
    assert sorted(line.split()[0] for line in (out / "stopped").read_text().splitlines()) == ["u1", "u2"]
    settings = yaml.safe_load((out / "settings.yaml").read_text())
    assert settings["sampler"]["step_size"] == 1.0e6 and settings["sampler"]["max_abs"] == 10.0


@pytest.mark.parametrize("line,key", [("steps: many", "steps"), ("batch_size: eight", "batch_size"),
                                      ("record_every: 0.5", "record_every")])
def test_a_value_that_is_no_number_is_refused_naming_key_and_file(tmp_path, capsys, line, key):
    """Refused before any model loads (the model paths do not exist)."""
    code, err, cfg = decode(tmp_path, tmp_path / "out", f"steps: 1\n{line}\n", capsys)
    assert code == 1
    assert err.startswith("ERROR: ") and f"{key}: " in err and str(cfg) in err
    assert not (tmp_path / "out").exists()
