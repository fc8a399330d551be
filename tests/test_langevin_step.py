"""One Langevin step everywhere: decoding, the refinement gain and the negative sampler take the same step on the
same input; the model's ``inference`` owns normalisation; renamed Langevin keys are translated with a warning."""

import logging

import numpy as np
import pytest
import torch

from ebm.energy_network import EnergyNetwork, valid_mask
from ebm.espnet_model import ESPnetEBMModel
from ebm.langevin import LangevinSampler, langevin_from_config, langevin_step
from ebm.negative_samplers import LangevinSamples

D = 6


def _net():
    torch.manual_seed(0)
    return EnergyNetwork(vocab_size=10, odim=D, adim=16, aheads=2, elayers=1, eunits=16, dlayers=1, dunits=16,
                         prenet_chans=8, head_units=8).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([11, 7, 4])
    text, tl = torch.randint(1, 10, (3, 5), generator=g), torch.tensor([5, 3, 4])
    feats = torch.randn(3, 11, D, generator=g) * valid_mask(lengths, 11).unsqueeze(-1)
    hyp = (feats + 0.7 * torch.randn(3, 11, D, generator=g)) * valid_mask(lengths, 11).unsqueeze(-1)
    return text, tl, feats, hyp, lengths


def _model(net, **refine):
    return ESPnetEBMModel(None, None, net, samplers=[], criteria=[{"name": "delta"}], **refine)


def _dist(a, target, lengths):
    mask = valid_mask(lengths, a.size(1)).unsqueeze(-1).to(a.dtype)
    return float(((a - target) ** 2 * mask).sum() / (mask.sum() * a.size(-1)))


@pytest.mark.parametrize("normalize", [True, False])
def test_decode_step_is_the_gain_step(normalize):
    """valid.refine_gain measures the step decoding takes: the same distance after the same steps."""
    net = _net()
    text, tl, feats, hyp, lengths = _batch()
    lam = 0.05 if normalize else 2.0
    decoded = LangevinSampler(steps=2, step_size=lam, sigma=0.0, normalize_grad=normalize).run(
        net, text, tl, hyp, lengths).feats
    stats = _model(net, refine_steps=2, refine_step_size=lam, refine_normalize=normalize).refinement_gain(
        text, tl, feats, lengths, {"tf_feats": hyp})
    assert stats["refine_dist0"] == pytest.approx(_dist(hyp, feats, lengths), rel=1e-6)
    assert stats["refine_dist"] == pytest.approx(_dist(decoded, feats, lengths), rel=1e-6)
    assert float((decoded - hyp).abs().max()) > 1e-2  # the steps did move


def test_gain_normalises_per_utterance_not_over_the_batch():
    """Each utterance's gain step is its own: the batch's distance is the frame-weighted sum of the utterances'
    distances alone (with a batch-wide RMS a loud batchmate would shrink a quiet utterance's step)."""
    net = _net()
    text, tl, feats, hyp, lengths = _batch()
    hyp = hyp.clone()
    hyp[0] = hyp[0] * 30.0  # a batchmate with a very different gradient scale
    model = _model(net, refine_steps=1, refine_step_size=0.1, refine_normalize=True)
    whole = model.refinement_gain(text, tl, feats, lengths, {"tf_feats": hyp})
    total = 0.0
    for b in range(3):
        s = slice(b, b + 1)
        one = model.refinement_gain(text[s], tl[s], feats[s], lengths[s], {"tf_feats": hyp[s]})
        total += one["refine_dist"] * int(lengths[b])
    assert whole["refine_dist"] == pytest.approx(total / int(lengths.sum()), rel=1e-5)


def test_negative_sampler_step_is_the_decode_step():
    """The langevin negative sampler's chain is decoding's rule: same steps, and its grad_clamp is an option of
    the same step function."""
    net = _net()
    text, tl, feats, hyp, lengths = _batch()

    def energy_fn(y, lens, index=None):
        return net.energy_and_grad(text, tl, y, lens)

    streams = {"tf_feats": hyp, "tf_feats_lengths": lengths}
    neg, _ = LangevinSamples(steps=3, step_size=0.02, sigma=0.0, init="teacher_forced", init_sigma=0.0)(
        feats, lengths, energy_fn=energy_fn, **streams)
    decoded = LangevinSampler(steps=3, step_size=0.02, sigma=0.0).run(net, text, tl, hyp, lengths).feats
    torch.testing.assert_close(neg, decoded)

    clamped, _ = LangevinSamples(steps=1, step_size=0.5, sigma=0.0, init="teacher_forced", init_sigma=0.0,
                                 grad_clamp=1e-3)(feats, lengths, energy_fn=energy_fn, **streams)
    mask = valid_mask(lengths, hyp.size(1)).unsqueeze(-1)
    _, grad = energy_fn(hyp, lengths)
    torch.testing.assert_close(clamped, langevin_step(hyp, grad, mask, 0.5, 0.0, grad_clamp=1e-3))
    assert (clamped - hyp).abs().max() <= 0.5e-3 + 1e-7


def test_noise_and_padding_of_the_step():
    """The noise std is sqrt(2 lambda) sigma temperature, drawn from the given generator; padding is untouched."""
    y = torch.zeros(2, 5, D)
    mask = valid_mask(torch.tensor([5, 2]), 5).unsqueeze(-1)
    out = langevin_step(y, torch.zeros_like(y), mask, 0.08, 0.5, 2.0, generator=torch.Generator().manual_seed(3))
    z = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, torch.where(mask, 0.4 * z, 0.0))
    assert torch.equal(out[1, 2:], torch.zeros(3, D))


def _stats_file(tmp_path, mean, std, count=100):
    path = tmp_path / "feats_stats.npz"
    np.savez(path, count=np.array(count), sum=mean * count, sum_square=(std ** 2 + mean ** 2) * count)
    return path


def test_inference_normalises_samples_and_denormalises(tmp_path):
    """``inference`` takes denormalised hypotheses and gives back the chain's normalised output and its
    denormalised form; with zero steps that is the hypothesis itself (a round trip)."""
    from espnet2.layers.global_mvn import GlobalMVN

    mean, std = np.linspace(-3, 2, D), np.linspace(0.5, 2, D)
    net = _net()
    model = ESPnetEBMModel(None, GlobalMVN(_stats_file(tmp_path, mean, std)), net, samplers=[],
                           criteria=[{"name": "delta"}]).eval()
    text, tl, _, hyp, lengths = _batch()
    mask = valid_mask(lengths, hyp.size(1)).unsqueeze(-1)
    denorm_hyp = torch.where(mask, hyp * torch.tensor(std, dtype=torch.float32) + torch.tensor(mean,
                                                                                                dtype=torch.float32), 0.0)
    before = denorm_hyp.clone()
    out = model.inference(text, tl, denorm_hyp, lengths, LangevinSampler(steps=0))
    assert torch.equal(denorm_hyp, before)  # the caller's tensor is left alone
    torch.testing.assert_close(out["feat_gen"], hyp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.where(mask, out["feat_gen_denorm"], 0.0), denorm_hyp, atol=1e-5, rtol=1e-5)
    assert torch.equal(out["lengths"], lengths)

    sampler = LangevinSampler(steps=2, step_size=0.05, sigma=0.0, normalize_grad=True)
    out = model.inference(text, tl, denorm_hyp, lengths, sampler)
    expect = sampler.run(net, text, tl, hyp, lengths).feats
    torch.testing.assert_close(out["feat_gen"], expect, atol=1e-5, rtol=1e-5)
    back = out["feat_gen"] * torch.tensor(std, dtype=torch.float32) + torch.tensor(mean, dtype=torch.float32)
    torch.testing.assert_close(torch.where(mask, out["feat_gen_denorm"], 0.0), torch.where(mask, back, 0.0),
                               atol=1e-5, rtol=1e-5)
    assert out["result"].energies.shape == (3, 3)

    other = _net()
    torch.manual_seed(7)
    for p in other.parameters():
        p.data.normal_()
    out_other = model.inference(text, tl, denorm_hyp, lengths, sampler, energy_network=other)
    assert not torch.allclose(out_other["feat_gen"], out["feat_gen"])  # the given energy is the one sampled


def test_old_grad_clip_key_is_translated_with_a_warning(caplog):
    """``grad_clip`` (the trainer's norm clip in ESPnet's YAML) is the per-frame clip's old name."""
    with caplog.at_level(logging.WARNING):
        old = langevin_from_config({"grad_clip": 0.5, "steps": 3})
        direct = LangevinSampler(grad_clip=0.25)
    assert old.grad_frame_clip == 0.5 and direct.grad_frame_clip == 0.25 and old.steps == 3
    assert "'grad_clip' is now 'grad_frame_clip'" in caplog.text
    assert langevin_from_config({"grad_frame_clip": "1e-1"}).grad_frame_clip == 0.1
    with pytest.raises(ValueError, match="keep only 'grad_frame_clip'"):
        langevin_from_config({"grad_clip": 0.5, "grad_frame_clip": 0.5})
    with pytest.raises(TypeError, match="noise_scale"):
        LangevinSampler(noise_scale=1.0)
    assert "grad_clip" not in repr(old) and "grad_frame_clip=0.5" in repr(old)
