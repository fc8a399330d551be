"""Decoding "like" an earlier decode: langevin_decode --settings takes the sampler options, batch size, EBM and
experts from that decode's settings.yaml (what tts.sh --ebm_decode_like and search.sh stage 3 use), reads an old
settings.yaml whose keys were renamed, and refuses a mix of settings and other options."""

import numpy as np
import pytest
import yaml
from test_robust_configs import decode, ebm_files  # noqa: F401 (a fixture)

from ebm.bin import langevin_decode

CONFIG = "steps: 2\nstep_size: 0.05\nsigma: 0.5\nseed: 3\nnormalize_grad: true\nmax_abs: 10\nbatch_size: 1\n"


def run(argv, capsys):
    code = 0
    try:
        langevin_decode.run(langevin_decode.main, argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def _feats(out):
    return {line.split()[0]: np.load(line.split()[1]) for line in (out / "norm/feats.scp").read_text().splitlines()}


def like(ebm_files, settings, out, *extra):  # noqa: F811
    return ["--settings", str(settings), "--text", str(ebm_files / "text"), "--init_scp",
            str(ebm_files / "feats.scp"), "--output_dir", str(out), *extra]


def test_a_decode_like_another_repeats_it_from_its_settings(ebm_files, tmp_path, capsys, caplog):  # noqa: F811
    code, err, _ = decode(ebm_files, tmp_path / "first", CONFIG, capsys)
    assert code in (0, None), err
    first = yaml.safe_load((tmp_path / "first/settings.yaml").read_text())
    assert first["sampler"]["grad_frame_clip"] is None and "grad_clip" not in first["sampler"]

    code, err = run(like(ebm_files, tmp_path / "first/settings.yaml", tmp_path / "again"), capsys)
    assert code in (0, None), err
    again = yaml.safe_load((tmp_path / "again/settings.yaml").read_text())
    assert again["sampler"] == first["sampler"] and again["batch_size"] == 1
    assert again["model_file"] == first["model_file"] and again["init"] == first["init"]
    a, b = _feats(tmp_path / "first"), _feats(tmp_path / "again")
    assert sorted(a) == sorted(b) == ["u1", "u2"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])  # seeded noise: the same chain

    # an old decode's settings.yaml spells the per-frame clip grad_clip: translated, with a warning naming the new key
    old = dict(first, sampler={("grad_clip" if k == "grad_frame_clip" else k): v
                               for k, v in first["sampler"].items()})
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    code, err = run(like(ebm_files, tmp_path / "old.yaml", tmp_path / "old"), capsys)
    assert code in (0, None), err
    assert "'grad_clip' is now 'grad_frame_clip'" in err + caplog.text
    for k, v in _feats(tmp_path / "old").items():
        np.testing.assert_array_equal(v, a[k])


def test_settings_hold_the_experts_of_a_product(ebm_files, tmp_path, capsys):  # noqa: F811
    """A product of experts' settings.yaml names each expert and weight; decoding like it uses them all."""
    model, config = str(ebm_files / "model.pth"), str(ebm_files / "config.yaml")
    base = ["--model_file", model, "--train_config", config, "--text", str(ebm_files / "text"), "--init_scp",
            str(ebm_files / "feats.scp"), "--steps", "1", "--sigma", "0", "--weight", "0.25",
            "--expert", config, model, "0.75"]
    code, err = run([*base, "--output_dir", str(tmp_path / "poe")], capsys)
    assert code in (0, None), err
    settings = tmp_path / "poe/settings.yaml"
    assert [e["weight"] for e in yaml.safe_load(settings.read_text())["experts"]] == [0.25, 0.75]
    code, err = run(like(ebm_files, settings, tmp_path / "poe_again"), capsys)
    assert code in (0, None), err
    assert [e["weight"] for e in yaml.safe_load((tmp_path / "poe_again/settings.yaml").read_text())["experts"]] \
        == [0.25, 0.75]
    for k, v in _feats(tmp_path / "poe").items():
        np.testing.assert_array_equal(v, _feats(tmp_path / "poe_again")[k])


@pytest.mark.parametrize("extra,message", [(("--steps", "5"), "drop --steps"),
                                           (("--model_file", "other.pth"), "is not the model_file of")])
def test_settings_and_other_decode_options_do_not_mix(ebm_files, tmp_path, capsys, extra, message):  # noqa: F811
    code, err, _ = decode(ebm_files, tmp_path / "first", CONFIG, capsys)
    assert code in (0, None), err
    code, err = run(like(ebm_files, tmp_path / "first/settings.yaml", tmp_path / "x", *extra), capsys)
    assert code == 1 and message in err, err
    assert not (tmp_path / "x/norm/feats.scp").exists()


def test_a_missing_or_foreign_settings_file_is_named(tmp_path, capsys):
    code, err = run(["--settings", str(tmp_path / "none.yaml"), "--text", "t", "--init_scp", "s", "--output_dir",
                     str(tmp_path / "o")], capsys)
    assert code == 1 and "none.yaml" in err and "settings.yaml of a finished decode" in err
    (tmp_path / "other.yaml").write_text("steps: 3\n")
    code, err = run(["--settings", str(tmp_path / "other.yaml"), "--text", "t", "--init_scp", "s", "--output_dir",
                     str(tmp_path / "o")], capsys)
    assert code == 1 and "no 'sampler' mapping" in err


def test_a_sweep_decodes_each_setting_as_its_own_call_would(ebm_files, tmp_path, capsys, monkeypatch):  # noqa: F811
    """--sweep (stage 6's grid in one process): each decode equals the lone call with the same overrides, its
    settings.yaml records its own options, and the model loads once."""
    cfg = tmp_path / "decode.yaml"
    cfg.write_text(CONFIG)
    base = ["--model_file", str(ebm_files / "model.pth"), "--train_config", str(ebm_files / "config.yaml"),
            "--config", str(cfg), "--text", str(ebm_files / "text"), "--init_scp", str(ebm_files / "feats.scp")]
    grid = [("a", "-", []), ("b", "steps=1,step_size=0.1", ["--steps", "1", "--step_size", "0.1"]),
            ("c", "sigma=0", ["--sigma", "0"])]
    sweep = [a for name, ov, _ in grid for a in ("--sweep", str(tmp_path / "sweep" / name), ov)]
    from ebm.task import EBMTask
    loads = []
    build = EBMTask.build_model_from_file
    monkeypatch.setattr(EBMTask, "build_model_from_file", lambda *a, **k: loads.append(a) or build(*a, **k))
    code, err = run([*base, *sweep], capsys)
    assert code in (0, None), err
    assert len(loads) == 1  # one model load for the three decodes
    for name, _, opts in grid:
        code, err = run([*base, *opts, "--output_dir", str(tmp_path / "alone" / name)], capsys)
        assert code in (0, None), err
        swept, alone = _feats(tmp_path / "sweep" / name), _feats(tmp_path / "alone" / name)
        assert sorted(swept) == sorted(alone) == ["u1", "u2"]
        for k in swept:
            np.testing.assert_array_equal(swept[k], alone[k])
        assert yaml.safe_load((tmp_path / "sweep" / name / "settings.yaml").read_text()) == \
            yaml.safe_load((tmp_path / "alone" / name / "settings.yaml").read_text())
    assert yaml.safe_load((tmp_path / "sweep/b/settings.yaml").read_text())["sampler"]["steps"] == 1
    assert not np.array_equal(_feats(tmp_path / "sweep/a")["u1"], _feats(tmp_path / "sweep/b")["u1"])


@pytest.mark.parametrize("extra,message", [
    (("--sweep", "o1", "steps=two"), "steps=two is not int"),
    (("--sweep", "o1", "stepz=2"), "'stepz=2' is not KEY=VALUE"),
    (("--sweep", "o1", "steps=2,steps=3"), "set steps twice"),
    (("--sweep", "o1", "-", "--output_dir", "o2"), "not both"),
    ((), "not both and not neither"),
])
def test_a_bad_sweep_is_refused_before_any_model_loads(tmp_path, capsys, extra, message):
    code, err = run(["--model_file", "m.pth", "--train_config", "c.yaml", "--text", "t", "--init_scp", "s",
                     *extra], capsys)
    assert code == 1 and message in err, err  # m.pth does not exist: a load would have failed with another error
