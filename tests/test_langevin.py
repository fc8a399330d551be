"""Langevin sampler: the update rule checked against a quadratic energy, stopping rules, and the real network."""

import pytest
import torch

from ebm.energy_network import EnergyNetwork, valid_mask
from ebm.langevin import LangevinResult, LangevinSampler, langevin_from_config

D = 4



class Quadratic:
    """E = 0.5 * ||Y - target(x)||^2 over valid cells, target a function of the text so that subsets of a batch
    (the sampler evaluates only active utterances) still get their own target. Token 9 as the first symbol makes
    the gradient NaN from call ``nan_after`` on."""

    def __init__(self, nan_after=None):
        g = torch.Generator().manual_seed(1)
        self.base = torch.randn(64, D, generator=g)
        self.nan_after = nan_after
        self.calls = 0

    def target(self, text, T):
        return text[:, :1, None].to(torch.float32) * self.base[None, :T] / 4

    def energy_and_grad(self, text, text_lengths, feats, feats_lengths, create_graph=False):
        self.calls += 1
        mask = valid_mask(feats_lengths, feats.size(1)).unsqueeze(-1)
        diff = torch.where(mask, feats - self.target(text, feats.size(1)), torch.zeros(()))
        energy = 0.5 * diff.square().flatten(1).sum(1)
        grad = diff.clone()
        if self.nan_after is not None and self.calls > self.nan_after:
            grad[text[:, 0] == 9] = float("nan")
        return energy, grad


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.tensor([[3, 1, 2, 0], [5, 2, 2, 4]])
    text_lengths = torch.tensor([3, 4])
    lengths = torch.tensor([5, 9])
    init = torch.randn(2, 9, D, generator=g) * valid_mask(lengths, 9).unsqueeze(-1)
    return text, text_lengths, init, lengths


def _frame_mask(lengths, T):
    return valid_mask(lengths, T).unsqueeze(-1)


def test_one_step_is_exact_gradient_descent():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    res = LangevinSampler(steps=1, step_size=0.1, sigma=0.0).run(q, text, tl, init, lengths)
    assert isinstance(res, LangevinResult)
    expect = (init - 0.1 * (init - q.target(text, 9))) * _frame_mask(lengths, 9)
    torch.testing.assert_close(res.feats, expect)


def test_many_steps_converge_and_energy_decreases():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    res = LangevinSampler(steps=200, step_size=0.1, sigma=0.0).run(q, text, tl, init, lengths)
    torch.testing.assert_close(res.feats, q.target(text, 9) * _frame_mask(lengths, 9), atol=1e-5, rtol=0)
    assert res.energies.shape == (2, 201)
    e = res.energies[:, :60]  # before float32 round-off floors it
    assert (e[:, 1:] < e[:, :-1]).all()
    assert (res.energies[:, 0] > 0.1).all() and (res.energies[:, -1] < 1e-8).all()
    assert not res.stopped.any() and res.stop_step.tolist() == [200, 200] and res.reasons == [None, None]


def test_noise_reproducible_with_seed_and_differs_from_descent():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    a = LangevinSampler(steps=5, step_size=0.05, seed=7).run(q, text, tl, init, lengths)
    b = LangevinSampler(steps=5, step_size=0.05, seed=7).run(q, text, tl, init, lengths)
    c = LangevinSampler(steps=5, step_size=0.05, sigma=0.0).run(q, text, tl, init, lengths)
    d = LangevinSampler(steps=5, step_size=0.05, seed=8).run(q, text, tl, init, lengths)
    assert torch.equal(a.feats, b.feats) and torch.equal(a.energies, b.energies)
    assert not torch.allclose(a.feats, c.feats) and not torch.allclose(a.feats, d.feats)
    pad = ~_frame_mask(lengths, 9).expand_as(a.feats)
    assert (a.feats[pad] == 0).all()


def test_noise_scale_one_step():
    """With a zero gradient the step is pure noise of std sqrt(2 * lambda) * sigma * temperature."""
    q = Quadratic()
    text, tl, _, _ = _batch()
    lengths = torch.tensor([9, 9])
    init = q.target(text, 9)
    res = LangevinSampler(steps=1, step_size=0.02, sigma=0.5, temperature=2.0, seed=0).run(q, text, tl, init,
                                                                                         lengths)
    std = (res.feats - init).std()
    assert abs(std.item() - (2 * 0.02) ** 0.5) < 0.06


def test_normalize_grad_gives_rms_lambda():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    init = init * 100.0
    res = LangevinSampler(steps=1, step_size=0.03, sigma=0.0, normalize_grad=True).run(q, text, tl, init, lengths)
    upd = res.feats - init
    rms = (upd.square().flatten(1).sum(1) / (lengths * D)).sqrt()
    torch.testing.assert_close(rms, torch.full((2,), 0.03))


def test_grad_and_update_clip_bound_frame_norms():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    init = init * 50.0
    for kwargs in (dict(update_clip=0.2, sigma=1.0, seed=0), dict(grad_clip=0.5, sigma=0.0)):
        res = LangevinSampler(steps=1, step_size=0.4, **kwargs).run(q, text, tl, init, lengths)
        norms = (res.feats - init).norm(dim=-1)
        assert norms.max() <= 0.2 + 1e-5
        assert norms.max() >= 0.2 - 1e-3  # the clip is actually binding


def test_drift_min_bin_keeps_the_low_bins_of_the_hypothesis():
    """Below drift_min_bin the hypothesis stays as it is; from it on the step is the plain one; noise is not masked."""
    q = Quadratic()
    text, tl, init, lengths = _batch()
    plain = LangevinSampler(steps=3, step_size=0.1, sigma=0.0).run(q, text, tl, init, lengths)
    res = LangevinSampler(steps=3, step_size=0.1, sigma=0.0, drift_min_bin=2).run(q, text, tl, init, lengths)
    torch.testing.assert_close(res.feats[..., :2], init[..., :2])
    torch.testing.assert_close(res.feats[..., 2:], plain.feats[..., 2:])  # the quadratic's bins are independent
    assert not torch.equal(res.feats[..., 2:], init[..., 2:])
    noisy = LangevinSampler(steps=1, step_size=0.1, seed=0, drift_min_bin=D).run(q, text, tl, init, lengths)
    assert not torch.equal(noisy.feats[0, :5], init[0, :5])
    with pytest.raises(ValueError, match="drift_min_bin"):
        LangevinSampler(drift_min_bin=-1)
    assert langevin_from_config({"drift_min_bin": 40}).drift_min_bin == 40


def test_padded_frames_zero_even_with_garbage_padding():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    init = init.clone()
    init[0, 5:] = float("nan")
    res = LangevinSampler(steps=3, step_size=0.1, seed=0).run(q, text, tl, init, lengths)
    assert (res.feats[0, 5:] == 0).all() and torch.isfinite(res.feats).all()
    assert not res.stopped.any()


def test_batched_equals_alone():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    s = LangevinSampler(steps=10, step_size=0.07, sigma=0.0, normalize_grad=True, update_clip=0.3)
    both = s.run(q, text, tl, init, lengths)
    for b in range(2):
        L, N = int(lengths[b]), int(tl[b])
        alone = s.run(q, text[b:b + 1, :N], tl[b:b + 1], init[b:b + 1, :L], lengths[b:b + 1])
        torch.testing.assert_close(both.feats[b, :L], alone.feats[0])
        torch.testing.assert_close(both.energies[b], alone.energies[0])


def test_record_every():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    res = LangevinSampler(steps=7, step_size=0.1, sigma=0.0).run(q, text, tl, init, lengths, record_every=3)
    assert res.record_steps.tolist() == [0, 3, 6, 7]
    full = LangevinSampler(steps=7, step_size=0.1, sigma=0.0).run(q, text, tl, init, lengths)
    torch.testing.assert_close(res.energies, full.energies[:, [0, 3, 6, 7]])


def test_nan_gradient_stops_only_that_utterance():
    q = Quadratic(nan_after=3)  # calls 1..3 (steps 0, 1, 2) are finite; the state of step 3 has a NaN gradient
    text, tl, init, lengths = _batch()
    text = text.clone()
    text[0, 0] = 9
    ref = LangevinSampler(steps=2, step_size=0.1, sigma=0.0).run(Quadratic(), text, tl, init, lengths)
    res = LangevinSampler(steps=10, step_size=0.1, sigma=0.0).run(q, text, tl, init, lengths)
    assert res.stopped.tolist() == [True, False]
    assert res.stop_step.tolist() == [3, 10]
    assert res.reasons == ["non_finite", None]
    torch.testing.assert_close(res.feats[0], ref.feats[0])  # last sane state: after step 2
    assert torch.isfinite(res.feats).all()
    assert (res.energies[0, 3:] == res.energies[0, 2]).all()
    assert (res.energies[1, 1:] < res.energies[1, :-1]).all()  # the other one went on
    assert q.calls == 11  # frozen rows are not evaluated, but the batch still takes its steps


def test_out_of_range_and_diverged_energy():
    q = Quadratic()
    text, tl, init, lengths = _batch()
    # gradient ascent (negative lambda is not allowed, so flip the energy instead) makes the chain run away
    class Flipped(Quadratic):
        def energy_and_grad(self, *args, **kwargs):
            e, g = super().energy_and_grad(*args, **kwargs)
            return -e, -g

    f = Flipped()
    res = LangevinSampler(steps=100, step_size=0.2, sigma=0.0, max_abs=5.0).run(f, text, tl, init, lengths)
    assert res.stopped.all() and res.reasons == ["out_of_range", "out_of_range"]
    assert (res.feats.abs() <= 5.0).all() and (res.stop_step < 100).all()
    # an energy that rises: a big noisy step on the quadratic from its minimum
    init = q.target(text, 9) * _frame_mask(lengths, 9)
    res = LangevinSampler(steps=5, step_size=1.0, sigma=3.0, seed=0, divergence_factor=2.0).run(
        q, text, tl, init, lengths)
    assert res.reasons == ["diverged_energy", "diverged_energy"] and (res.stop_step == 1).all()
    torch.testing.assert_close(res.feats, init)


def test_from_config():
    s = langevin_from_config({"steps": 3, "step_size": 0.5, "sigma": 0.0, "max_abs": 4.0})
    assert (s.steps, s.step_size, s.sigma, s.max_abs) == (3, 0.5, 0.0, 4.0)
    assert langevin_from_config(None).steps == 300
    with pytest.raises(ValueError):
        langevin_from_config({"stepz": 3})
    with pytest.raises(ValueError):
        LangevinSampler(step_size=0.0)


def test_decode_cli_names_a_bad_sampler_value(tmp_path, capsys):
    """A bad --drift_min_bin stops langevin_decode with one ERROR line naming the option, before any model loads."""
    from ebm.bin import langevin_decode

    cfg = tmp_path / "decode.yaml"
    cfg.write_text("steps: 1\nstep_size: 1.0\n")
    argv = ["--model_file", str(tmp_path / "none.pth"), "--train_config", str(tmp_path / "none.yaml"), "--config",
            str(cfg), "--text", str(tmp_path / "text"), "--init_scp", str(tmp_path / "feats.scp"),
            "--output_dir", str(tmp_path / "out"), "--drift_min_bin", "-1"]
    with pytest.raises(SystemExit) as e:
        langevin_decode.run(langevin_decode.main, argv)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "ERROR:" in err and "drift_min_bin" in err and str(cfg) in err
    assert not (tmp_path / "out").exists()


def test_real_network_eval_mode_no_param_grad():
    torch.manual_seed(0)
    net = EnergyNetwork(vocab_size=10, odim=8, adim=16, aheads=2, elayers=1, eunits=32, dlayers=1, dunits=32,
                        prenet_layers=1, prenet_chans=16, head_units=16)
    net.train()
    modes_seen = []
    orig = net.energy_and_grad

    def spy(*args, **kwargs):
        modes_seen.append(net.training or any(m.training for m in net.modules()))
        return orig(*args, **kwargs)

    net.energy_and_grad = spy
    text = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    tl = torch.tensor([4, 2])
    lengths = torch.tensor([12, 7])
    init = torch.randn(2, 12, 8) * valid_mask(lengths, 12).unsqueeze(-1)
    res = LangevinSampler(steps=4, step_size=0.01, seed=0, update_clip=1.0).run(net, text, tl, init, lengths)
    assert modes_seen and not any(modes_seen)
    assert net.training and all(m.training for m in net.modules())  # mode restored
    assert all(p.grad is None for p in net.parameters())
    assert torch.isfinite(res.feats).all() and torch.isfinite(res.energies).all()
    assert res.energies.shape == (2, 5) and (res.feats[1, 7:] == 0).all()
    assert not torch.equal(res.feats, init)


def test_real_network_frozen_row_does_not_change_the_others():
    """A NaN initial hypothesis stops at step 0; the sampler then evaluates only the other (subset path)."""
    torch.manual_seed(0)
    net = EnergyNetwork(vocab_size=10, odim=8, adim=16, aheads=2, elayers=1, eunits=32, dlayers=1, dunits=32,
                        prenet_layers=1, prenet_chans=16, head_units=16)
    text = torch.tensor([[1, 2, 3, 4, 5], [5, 6, -32768, -32768, -32768]])
    tl = torch.tensor([5, 2])
    lengths = torch.tensor([12, 7])
    init = torch.randn(2, 12, 8) * valid_mask(lengths, 12).unsqueeze(-1)
    init[0, 3, 2] = float("nan")
    s = LangevinSampler(steps=3, step_size=0.05, sigma=0.0)
    res = s.run(net, text, tl, init, lengths)
    alone = s.run(net, text[1:, :2], tl[1:], init[1:, :7], lengths[1:])
    assert res.reasons == ["non_finite", None] and res.stop_step.tolist() == [0, 3]
    torch.testing.assert_close(res.feats[1, :7], alone.feats[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.energies[1], alone.energies[0], atol=1e-5, rtol=1e-4)
    assert not torch.equal(alone.feats[0], init[1, :7])


def test_numbers_pyyaml_reads_as_strings_are_converted():
    import yaml

    conf = yaml.safe_load("steps: 3e2\nstep_size: 1.0e6\nmax_abs: 1e1\nseed: null\n")
    assert conf["step_size"] == "1.0e6"  # PyYAML's YAML 1.1 reading, which used to crash the sampler
    s = langevin_from_config(conf)
    assert (s.steps, s.step_size, s.max_abs, s.seed) == (300, 1.0e6, 10.0, None)
    assert isinstance(s.steps, int) and isinstance(s.step_size, float)


@pytest.mark.parametrize("conf,key", [({"step_size": "fast"}, "step_size"), ({"steps": 2.5}, "steps"),
                                      ({"sigma": True}, "sigma"), ({"steps": None}, "steps"),
                                      ({"normalize_grad": "yes"}, "normalize_grad")])
def test_non_numbers_are_refused_naming_the_key(conf, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        langevin_from_config(conf)


def test_output_problem_flags_non_finite_and_far_out_mels():
    from ebm.langevin import OUTPUT_BOUND, output_problem

    ok = torch.randn(20, D) * 3
    assert output_problem(ok) is None
    far = ok.clone()
    far[3, 1] = 6.8e3
    assert "reaches 6.8e+03" in output_problem(far) and OUTPUT_BOUND < 6.8e3
    bad = ok.clone()
    bad[0, 0] = float("nan")
    assert "1 of its 80 mel values are not finite" == output_problem(bad)
