"""Negative samplers: lengths, zero padding, distortion ratios, stream checks, mixing, ESPnet SpecAugment layers."""

import math

import pytest
import torch

from ebm.negative_samplers import (SAMPLERS, FreeRunning, GaussianNoise, LangevinSamples, MixedSampler, NegativeSet,
                                   OversmoothedReference, RandomMasking, SpecAugmentDistortion, TeacherForced,
                                   build_sampler)

D = 80



def _batch(lengths=(120, 77, 31), seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    feats = torch.randn(len(lengths), int(lengths.max()) + 4, D, generator=g) + 3.0  # no exact zeros inside
    feats = feats * (torch.arange(feats.size(1))[None] < lengths[:, None]).unsqueeze(-1)
    return feats, lengths


def _streams(feats, lengths):
    tf = (feats * 0.9) + 0.05 * torch.randn_like(feats)
    tf = tf * (torch.arange(feats.size(1))[None] < lengths[:, None]).unsqueeze(-1)
    fr_lengths = lengths + torch.tensor([5, -3, 10])
    fr = torch.randn(len(lengths), int(fr_lengths.max()), D)
    return {"tf_feats": tf, "tf_feats_lengths": lengths.clone(), "fr_feats": fr, "fr_feats_lengths": fr_lengths}


def _padding_is_zero(x, lengths):
    return all(torch.all(x[b, int(lengths[b]):] == 0) for b in range(x.size(0)))


def _energy_fn(feats, lengths, index=None):
    """Quadratic energy 0.5*||Y - 1||^2: Langevin drifts towards 1 (tests the update rule, not a network)."""
    grad = (feats - 1.0) * (torch.arange(feats.size(1))[None] < lengths[:, None]).unsqueeze(-1)
    return 0.5 * grad.pow(2).sum((1, 2)), grad


SAME_LENGTH = [
    ("random_masking", {}),
    ("random_masking", {"mode": "freq", "fill": "noise"}),
    ("random_masking", {"mode": "both"}),
    ("specaug", {}),
    ("gaussian_noise", {}),
    ("gaussian_noise", {"source": "teacher_forced"}),
    ("teacher_forced", {}),
    ("oversmoothed", {}),
    ("langevin", {"energy_fn": _energy_fn, "steps": 3}),
    ("langevin", {"energy_fn": _energy_fn, "steps": 2, "init": "teacher_forced"}),
]


@pytest.mark.parametrize("name,conf", SAME_LENGTH)
def test_same_length_samplers_keep_lengths_and_zero_padding(name, conf):
    torch.manual_seed(0)
    feats, lengths = _batch()
    before = feats.clone()
    neg, neg_lengths = build_sampler(name, **conf)(feats, lengths, **_streams(feats, lengths))
    assert neg.shape == feats.shape and torch.equal(neg_lengths, lengths)
    assert _padding_is_zero(neg, lengths)
    assert torch.equal(feats, before), "input modified in place"
    assert not torch.allclose(neg, feats), "no distortion"
    assert not neg.requires_grad


@pytest.mark.parametrize("name,conf", SAME_LENGTH)
def test_padding_is_zeroed_even_if_input_padding_is_not(name, conf):
    feats, lengths = _batch()
    dirty = feats.clone()
    dirty[1, 77:] = 7.0
    streams = _streams(feats, lengths)
    streams["tf_feats"][1, 77:] = 7.0
    neg, _ = build_sampler(name, **conf)(dirty, lengths, **streams)
    assert _padding_is_zero(neg, lengths)


@pytest.mark.parametrize("mode", ["time", "freq", "both"])
@pytest.mark.parametrize("ratio", [0.25, 0.3, (0.25, 0.30)])
def test_masking_ratio(mode, ratio):
    torch.manual_seed(1)
    feats, lengths = _batch(lengths=(300, 157, 64))
    neg, _ = RandomMasking(ratio=ratio, mode=mode)(feats, lengths)
    lo, hi = (ratio, ratio) if isinstance(ratio, float) else ratio
    for b, L in enumerate(lengths.tolist()):
        frac = float((neg[b, :L] == 0).float().mean())
        assert lo - 0.02 <= frac <= hi + 0.02, (mode, ratio, L, frac)
        # untouched cells are the reference exactly
        kept = neg[b, :L] != 0
        assert torch.equal(neg[b, :L][kept], feats[b, :L][kept])


def test_masking_spans_are_contiguous():
    torch.manual_seed(2)
    feats, lengths = _batch(lengths=(400,))
    neg, _ = RandomMasking(ratio=0.3, mode="time", span=(10, 10))(feats, lengths)
    masked = (neg[0, :400] == 0).all(-1).int()
    runs = int((masked[1:] - masked[:-1] == 1).sum()) + int(masked[0])
    assert runs <= 12  # 120 frames in spans of 10: at most 12 runs (fewer when spans touch), not ~100 single frames


def test_gaussian_sigma_range():
    torch.manual_seed(3)
    feats, lengths = _batch(lengths=(2000,) * 64)
    sampler = GaussianNoise(sigma_min=0.2, sigma_max=0.8)
    neg, _ = sampler(feats, lengths)
    est = (neg - feats)[:, :2000].reshape(64, -1).std(dim=1)
    assert torch.all(est > 0.2 * 0.97) and torch.all(est < 0.8 * 1.03)
    torch.testing.assert_close(est, sampler.last_sigma, rtol=0.03, atol=0)
    # log-uniform: about half the draws below the geometric mean
    below = float((sampler.last_sigma < math.sqrt(0.2 * 0.8)).float().mean())
    assert 0.25 < below < 0.75
    with pytest.raises(ValueError):
        GaussianNoise(sigma_min=0.0)


def test_oversmoothed_shrinks_variance_and_blurs_in_time():
    torch.manual_seed(4)
    feats, lengths = _batch()
    valid = (torch.arange(feats.size(1))[None] < lengths[:, None]).unsqueeze(-1)

    def per_utt(x, fn):
        return [fn(x[b, :int(lengths[b])]) for b in range(x.size(0))]

    # shrink only: each utterance's deviation from its own per-bin mean is scaled by exactly the factor
    neg, _ = OversmoothedReference(shrink=0.5, blur=0.0)(feats, lengths)
    for x, y in zip(per_utt(feats, lambda u: u - u.mean(0)), per_utt(neg, lambda u: u - u.mean(0))):
        torch.testing.assert_close(y, 0.5 * x)
    # blur only: the mean is kept, frame-to-frame differences shrink, no shrink of a constant signal
    neg, _ = OversmoothedReference(shrink=1.0, blur=2.0)(feats, lengths)
    for x, y in zip(per_utt(feats, lambda u: u), per_utt(neg, lambda u: u)):
        torch.testing.assert_close(y.mean(0), x.mean(0), atol=0.1, rtol=0)  # edges replicate
        assert y.diff(dim=0).std() < 0.5 * x.diff(dim=0).std()
    flat = torch.full_like(feats, 2.0) * valid
    torch.testing.assert_close(OversmoothedReference(shrink=1.0, blur=2.0)(flat, lengths)[0], flat)
    with pytest.raises(ValueError):
        OversmoothedReference(shrink=(0.9, 0.5))


def test_teacher_forced_returns_stream_and_checks_lengths():
    feats, lengths = _batch()
    streams = _streams(feats, lengths)
    neg, nl = TeacherForced()(feats, lengths, **streams)
    assert torch.equal(neg, streams["tf_feats"]) and torch.equal(nl, lengths)
    streams["tf_feats_lengths"] = lengths + torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match=r"differ from the reference lengths at batch rows \[1\]"):
        TeacherForced()(feats, lengths, **streams)
    with pytest.raises(ValueError, match="tf_feats"):
        TeacherForced()(feats, lengths)


def test_free_running_keeps_its_own_lengths():
    feats, lengths = _batch()
    streams = _streams(feats, lengths)
    streams["fr_feats"] = streams["fr_feats"] + 1.0  # nonzero padding in the stream must be cleaned
    neg, nl = FreeRunning()(feats, lengths, **streams)
    assert torch.equal(nl, streams["fr_feats_lengths"]) and neg.size(1) == int(nl.max())
    assert _padding_is_zero(neg, nl)
    assert torch.equal(neg[0, : int(nl[0])], streams["fr_feats"][0, : int(nl[0])])


def test_langevin_update_rule():
    torch.manual_seed(4)
    feats, lengths = _batch()
    # noiseless, from the reference: Y_K = 1 + (1 - lam)^K (Y_0 - 1) for E = 0.5*||Y - 1||^2
    sampler = LangevinSamples(steps=5, step_size=0.1, sigma=0.0, init_sigma=0.0)
    neg, _ = sampler(feats, lengths, energy_fn=_energy_fn)
    expect = (1 + 0.9 ** 5 * (feats - 1)) * (torch.arange(feats.size(1))[None] < lengths[:, None]).unsqueeze(-1)
    torch.testing.assert_close(neg, expect)
    with pytest.raises(ValueError, match="energy_fn"):
        LangevinSamples()(feats, lengths)


def test_langevin_with_energy_network_under_no_grad():
    from ebm.energy_network import EnergyNetwork

    torch.manual_seed(5)
    net = EnergyNetwork(vocab_size=10, adim=16, aheads=2, elayers=1, eunits=16, dlayers=1, dunits=16,
                        prenet_chans=8, head_units=8).eval()
    feats, lengths = _batch(lengths=(20, 12, 7))
    text, tl = torch.randint(1, 10, (3, 5)), torch.tensor([5, 4, 3])

    def energy_fn(y, l, index=None):
        return net.energy_and_grad(text if index is None else text[index], tl if index is None else tl[index], y, l)

    with torch.no_grad():
        neg, nl = LangevinSamples(steps=2, step_size=0.5, energy_fn=energy_fn)(feats, lengths)
    assert _padding_is_zero(neg, lengths) and torch.isfinite(neg).all() and not neg.requires_grad
    assert not any(True for _ in LangevinSamples(energy_fn=net).parameters())  # not registered as a submodule


def test_specaug_uses_espnet_layers():
    from espnet2.layers.mask_along_axis import MaskAlongAxis
    from espnet2.layers.time_warp import TimeWarp

    torch.manual_seed(6)
    sampler = SpecAugmentDistortion(apply_time_warp=False, num_time_mask=1, time_mask_width_range=(20, 21),
                                    num_freq_mask=1, freq_mask_width_range=(10, 11))
    assert any(isinstance(m, MaskAlongAxis) for m in sampler.modules())
    assert any(isinstance(m, TimeWarp) for m in SpecAugmentDistortion().modules())
    feats, lengths = _batch(lengths=(120, 77, 40))
    neg, _ = sampler(feats, lengths)
    for b, L in enumerate(lengths.tolist()):
        zero = neg[b, :L] == 0
        # one 20-frame time mask and one 10-bin band mask per utterance, inside its valid frames
        assert int(zero.all(-1).sum()) == 20 and int(zero.all(0).sum()) == 10
    assert _padding_is_zero(neg, lengths)


def test_mixed_sampler_all_types():
    torch.manual_seed(7)
    feats, lengths = _batch()
    mixed = build_sampler("mixed", samplers=[
        {"name": "random_masking"}, {"name": "gaussian_noise"}, {"name": "gaussian_noise", "label": "noisy_tf",
                                                                   "conf": {"source": "teacher_forced"}},
        {"name": "teacher_forced"}, {"name": "free_running"}, {"name": "random_masking", "conf": {"mode": "freq"}},
    ])
    out = mixed(feats, lengths, **_streams(feats, lengths))
    assert list(out) == ["random_masking", "gaussian_noise", "noisy_tf", "teacher_forced", "free_running",
                         "random_masking_2"]
    for label, neg in out.items():
        assert isinstance(neg, NegativeSet) and neg.index is None and neg.feats.size(0) == 3
        assert _padding_is_zero(neg.feats, neg.lengths)
    assert torch.equal(out["free_running"].lengths, lengths + torch.tensor([5, -3, 10]))


def test_mixed_sampler_sample_mode():
    torch.manual_seed(8)
    feats, lengths = _batch(lengths=tuple(range(30, 94, 2)))  # 32 utterances
    streams = {"tf_feats": feats * 0.5, "tf_feats_lengths": lengths.clone()}
    mixed = MixedSampler([{"name": "teacher_forced", "weight": 3.0}, {"name": "random_masking", "weight": 1.0},
                          {"name": "langevin", "weight": 0.0, "conf": {"energy_fn": _energy_fn}}], mode="sample")
    out = mixed(feats, lengths, **streams)
    assert "langevin" not in out  # weight 0: never drawn
    rows = torch.cat([n.index for n in out.values()]).sort().values
    assert torch.equal(rows, torch.arange(32))  # each utterance exactly one negative
    tf = out["teacher_forced"]
    assert tf.index.numel() > out["random_masking"].index.numel()
    assert torch.equal(tf.feats, (feats * 0.5)[tf.index])
    assert torch.equal(tf.lengths, lengths[tf.index])


def test_registry_and_errors():
    assert set(SAMPLERS) == {"random_masking", "specaug", "gaussian_noise", "teacher_forced", "free_running",
                             "langevin", "mixed", "oversmoothed"}
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("cutmix")
    with pytest.raises(ValueError, match="mode"):
        RandomMasking(mode="diagonal")
    with pytest.raises(ValueError, match="ratio"):
        RandomMasking(ratio=(0.3, 1.5))
