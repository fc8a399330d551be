"""Training criteria: loss directions, exact zeros, padding, weights and per-type statistics."""

import math

import pytest
import torch
import torch.nn.functional as F

from ebm.criteria import (CRITERIA, BinaryNCE, CombinedCriterion, DeltaScore, DenoisingScoreMatching, RankingNCE,
                          build_criterion, dtw_warped_reference)


def _grads(crit, e_pos, e_neg):
    e_pos = e_pos.clone().requires_grad_(True)
    e_neg = e_neg.clone().requires_grad_(True)
    loss, stats = crit(e_pos, e_neg)
    loss.backward()
    return loss, stats, e_pos.grad, e_neg.grad


@pytest.mark.parametrize("name", ["binary_nce", "ranking_nce"])
@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_nce_pushes_positives_down_and_negatives_up(name, alpha):
    crit = build_criterion(name, alpha=alpha)
    e_pos = torch.tensor([0.3, -0.2, 1.0])
    e_neg = torch.tensor([[0.5, -1.0], [0.1, 0.4], [0.8, 0.0]])
    loss, _, g_pos, g_neg = _grads(crit, e_pos, e_neg)
    # gradient descent lowers E+ and raises E- (alpha small enough not to flip signs at these energies)
    assert torch.all(g_pos > 0) and torch.all(g_neg < 0)
    # finite differences agree: the loss falls when E+ falls and when E- rises
    eps = 1e-3
    with torch.no_grad():
        assert crit(e_pos - eps, e_neg)[0] < loss
        assert crit(e_pos, e_neg + eps)[0] < loss
        fd = (crit(e_pos + eps * torch.eye(3)[0], e_neg)[0] - crit(e_pos - eps * torch.eye(3)[0], e_neg)[0]) / (2 * eps)
    assert abs(float(fd) - float(g_pos[0])) < 1e-3


def test_binary_nce_value():
    e_pos, e_neg = torch.tensor([0.5, -1.0]), torch.tensor([[2.0], [0.0]])
    loss, stats = BinaryNCE()(e_pos, e_neg)
    expect = -F.logsigmoid(-e_pos).mean() - F.logsigmoid(e_neg).mean()
    assert math.isclose(float(loss), float(expect), rel_tol=1e-6)
    loss_a, stats_a = BinaryNCE(alpha=0.5)(e_pos, e_neg)
    reg = torch.cat([e_pos, e_neg.flatten()]).pow(2).mean()
    assert math.isclose(float(loss_a), float(expect + 0.5 * reg), rel_tol=1e-6)
    assert math.isclose(stats_a["energy_reg"], float(reg), rel_tol=1e-6)
    # stable at large energies (softplus, no log(0))
    big, _ = BinaryNCE()(torch.tensor([200.0]), torch.tensor([-200.0]))
    assert torch.isfinite(big) and math.isclose(float(big), 400.0, rel_tol=1e-6)


def test_ranking_nce_value_and_scale():
    e_pos, e_neg = torch.tensor([0.0, 1.0]), torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    loss, stats = RankingNCE()(e_pos, e_neg)
    logits = -torch.cat([e_pos[:, None], e_neg], 1)
    assert math.isclose(float(loss), float(F.cross_entropy(logits, torch.zeros(2, dtype=torch.long))), rel_tol=1e-6)
    assert stats["acc_all"] == 0.5 and stats["acc"] == 0.75
    # shifting all energies of an utterance leaves InfoNCE unchanged (Z cancels)
    shifted, _ = RankingNCE()(e_pos + 5, e_neg + 5)
    assert math.isclose(float(shifted), float(loss), rel_tol=1e-6)


def test_per_type_stats():
    e_pos = torch.tensor([0.0, 0.0, 0.0, 0.0])
    e_neg = {"mask": torch.tensor([1.0, 1.0, -1.0, 1.0]), "tf": torch.tensor([-1.0, -1.0, -1.0, 1.0])}
    for crit in (BinaryNCE(), RankingNCE()):
        _, stats = crit(e_pos, e_neg)
        assert stats["acc_mask"] == 0.75 and stats["acc_tf"] == 0.25 and stats["acc"] == 0.5
        assert stats["e_neg_mask"] == 0.5 and stats["e_neg_tf"] == -0.5 and stats["e_pos"] == 0.0
        assert all(isinstance(v, float) for v in stats.values())


def test_subset_negatives_for_binary_nce_only():
    e_pos = torch.tensor([0.0, 1.0, 2.0])
    e_neg = {"a": (torch.tensor([0.5]), torch.tensor([2])), "b": (torch.tensor([2.0, -1.0]), torch.tensor([0, 1]))}
    _, stats = BinaryNCE()(e_pos, e_neg)
    assert stats["acc_a"] == 0.0 and stats["acc_b"] == 0.5
    with pytest.raises(ValueError, match="subset"):
        RankingNCE()(e_pos, e_neg)
    with pytest.raises(ValueError, match="batch"):
        BinaryNCE()(e_pos, torch.tensor([1.0, 2.0]))


def _score_batch():
    torch.manual_seed(0)
    lengths = torch.tensor([6, 4])
    ref, hyp = torch.randn(2, 6, 5), torch.randn(2, 6, 5)
    ref[1, 4:] = 0
    hyp[1, 4:] = 0
    return hyp, ref, lengths


def test_delta_zero_iff_grad_points_at_reference():
    hyp, ref, lengths = _score_batch()
    crit = DeltaScore()
    loss, stats = crit(hyp=hyp, ref=ref, lengths=lengths, grad=-(ref - hyp))
    assert float(loss) == 0.0 and math.isclose(stats["score_cos"], 1.0, rel_tol=1e-5)
    loss2, _ = crit(hyp=hyp, ref=ref, lengths=lengths, grad=torch.zeros_like(ref))
    assert float(loss2) > 0
    # value: sum over bins, mean over valid frames, then batch
    d = (ref - hyp).pow(2).sum(-1)
    expect = (d[0, :6].mean() + d[1, :4].mean()) / 2
    assert math.isclose(float(loss2), float(expect), rel_tol=1e-6)
    # scale: the target is a fraction of the displacement
    half, _ = DeltaScore(scale=0.5)(hyp=hyp, ref=ref, lengths=lengths, grad=-0.5 * (ref - hyp))
    assert float(half) == 0.0


def test_delta_euclidean_distance_value_and_zero():
    """``distance: euclidean`` averages each frame's norm instead of its square, and is still zero at the target
    with a finite gradient there."""
    hyp, ref, lengths = _score_batch()
    crit = DeltaScore(distance="euclidean")
    loss, _ = crit(hyp=hyp, ref=ref, lengths=lengths, grad=torch.zeros_like(ref))
    d = (ref - hyp).norm(dim=-1)
    assert math.isclose(float(loss), float((d[0, :6].mean() + d[1, :4].mean()) / 2), rel_tol=1e-5)
    g = (-(ref - hyp)).requires_grad_(True)
    zero, _ = crit(hyp=hyp, ref=ref, lengths=lengths, grad=g)
    zero.backward()
    assert float(zero.detach()) < 1e-3 and torch.isfinite(g.grad).all()
    with pytest.raises(ValueError, match="distance"):
        DeltaScore(distance="l1")


def test_delta_euclidean_fits_the_typical_frame_not_the_outliers():
    """One correction fitted to frames of which a few are far off: the squared criterion learns their mean, pulled
    by the outliers; the Euclidean one learns (near) the median, and a step along it leaves the typical frame,
    hence the mean per-frame distance, closer to the reference."""
    torch.manual_seed(0)
    n, dim = 200, 4
    disp = 0.1 * torch.randn(1, n, dim) + 0.5
    disp[0, :20] = 8.0                            # a tenth of the frames far off
    hyp = torch.zeros(1, n, dim)
    lengths = torch.tensor([n])
    fitted = {}
    for distance in ("squared", "euclidean"):
        step = torch.zeros(1, 1, dim, requires_grad=True)    # one correction for every frame
        opt = torch.optim.Adam([step], lr=0.05)
        for i in range(600):
            if i == 400:
                opt.param_groups[0]["lr"] = 0.005          # settle, instead of hopping about the optimum
            opt.zero_grad()
            DeltaScore(distance=distance)(hyp=hyp, ref=disp, lengths=lengths, grad=-step.expand(1, n, dim))[0].backward()
            opt.step()
        fitted[distance] = step.detach()
    assert torch.allclose(fitted["squared"][0, 0], disp[0].mean(0), atol=0.05)
    assert torch.allclose(fitted["euclidean"][0, 0], torch.full((dim,), 0.5), atol=0.1)
    after = {k: (disp - v).norm(dim=-1).mean() for k, v in fitted.items()}
    assert after["euclidean"] < 0.8 * after["squared"]


def test_delta_ignores_padded_frames_and_trains_grad():
    hyp, ref, lengths = _score_batch()
    grad = -(ref - hyp)
    grad[1, 4:] = 100.0  # garbage on padding
    loss, _ = DeltaScore()(hyp=hyp, ref=ref, lengths=lengths, grad=grad)
    assert float(loss) == 0.0
    g = torch.zeros_like(ref, requires_grad=True)
    DeltaScore()(hyp=hyp, ref=ref, lengths=lengths, grad=g)[0].backward()
    assert torch.all(g.grad[1, 4:] == 0) and g.grad[0].abs().sum() > 0
    # descending the loss moves -grad towards the displacement
    assert torch.all((-g.grad[0] * (ref - hyp)[0]) <= 0)


def test_dsm_targets():
    torch.manual_seed(0)
    ref = torch.randn(3, 7, 4)
    lengths = torch.tensor([7, 5, 3])
    ref = ref * (torch.arange(7)[None] < lengths[:, None]).unsqueeze(-1)
    crit = DenoisingScoreMatching(sigma_min=0.2, sigma_max=0.8)
    hyp, hl, extra = crit.make_hypothesis(ref, lengths)
    sigma = extra["sigma"]
    assert torch.equal(hl, lengths) and torch.all(sigma >= 0.2) and torch.all(sigma <= 0.8)
    assert torch.all(hyp[1, 5:] == 0) and not torch.allclose(hyp, ref)
    loss, _ = crit(hyp=hyp, ref=ref, lengths=lengths, grad=-(ref - hyp), **extra)
    assert float(loss) == 0.0
    score = DenoisingScoreMatching(0.2, 0.8, target="score")
    s = sigma.view(-1, 1, 1)
    loss_s, _ = score(hyp=hyp, ref=ref, lengths=lengths, grad=-(ref - hyp) / s ** 2, sigma=sigma)
    assert float(loss_s) < 1e-10
    assert float(score(hyp=hyp, ref=ref, lengths=lengths, grad=-(ref - hyp), sigma=sigma)[0]) > 0
    with pytest.raises(ValueError, match="sigma"):
        score(hyp=hyp, ref=ref, lengths=lengths, grad=-(ref - hyp))


def test_combined_weights_and_prefixes():
    e_pos, e_neg = torch.tensor([0.2, -0.1]), {"mask": torch.tensor([0.4, 0.3])}
    hyp, ref, lengths = _score_batch()
    grad = torch.zeros_like(ref)
    comb = build_criterion("combined", criteria=[
        {"name": "binary_nce", "weight": 2.0, "conf": {"alpha": 0.01}},
        {"name": "delta", "weight": 0.5, "conf": {"hypothesis": "teacher_forced"}},  # draws hyp from tf_feats
        {"name": "binary_nce", "weight": 1.0},
    ])
    assert isinstance(comb, CombinedCriterion) and comb.needs_energies and comb.needs_score
    streams = {"tf_feats": hyp, "tf_feats_lengths": lengths}
    loss, stats = comb(e_pos=e_pos, e_neg=e_neg, ref=ref, lengths=lengths, score_fn=lambda y, l: grad,
                       streams=streams)
    b1 = BinaryNCE(alpha=0.01)(e_pos, e_neg)[0]
    b2 = BinaryNCE()(e_pos, e_neg)[0]
    d = DeltaScore()(hyp=hyp, ref=ref, lengths=lengths, grad=grad)[0]
    assert math.isclose(float(loss), float(2 * b1 + 0.5 * d + b2), rel_tol=1e-6)
    assert "binary_nce_acc_mask" in stats and "binary_nce_2_acc_mask" in stats and "delta_score_cos" in stats
    with pytest.raises(ValueError, match="e_pos"):
        comb(ref=ref, lengths=lengths, score_fn=lambda y, l: grad, streams=streams)


def test_combined_draws_own_hypotheses_through_score_fn():
    hyp, ref, lengths = _score_batch()
    calls = []

    def score_fn(y, l):  # a perfect score model: -grad = ref - y
        calls.append(y)
        return -(ref - y)

    comb = CombinedCriterion([
        {"name": "dsm", "conf": {"sigma_min": 0.1, "sigma_max": 0.5}},
        {"name": "delta", "conf": {"hypothesis": {"name": "gaussian_noise", "conf": {"sigma_min": 0.3}}}},
    ])
    loss, stats = comb(ref=ref, lengths=lengths, score_fn=score_fn)
    assert len(calls) == 2 and float(loss) == 0.0
    assert not comb.needs_energies


def _slowed(ref, lengths, factor=2):
    """Each reference frame repeated ``factor`` times: a hypothesis with its own (slower) timing."""
    hyp = torch.zeros(ref.size(0), factor * ref.size(1), ref.size(2))
    for b, n in enumerate(lengths.tolist()):
        hyp[b, :factor * n] = ref[b, :n].repeat_interleave(factor, 0)
    return hyp, factor * lengths


def test_dtw_warped_reference_follows_the_hypothesis_timing():
    torch.manual_seed(0)
    ref, lengths = torch.randn(2, 9, 5), torch.tensor([9, 6])
    hyp, hyp_lengths = _slowed(ref, lengths)
    warped = dtw_warped_reference(ref, lengths, hyp, hyp_lengths)
    assert warped.shape == hyp.shape and torch.allclose(warped, hyp)  # a pure time stretch is undone exactly
    assert torch.all(warped[1, 12:] == 0)  # padding stays empty
    noisy = hyp + 0.3 * torch.randn_like(hyp)
    warped = dtw_warped_reference(ref, lengths, noisy, hyp_lengths)
    assert float((warped[0] - hyp[0]).abs().max()) < float((noisy[0] - hyp[0]).abs().max())


def test_aligned_delta_trains_on_free_running_hypotheses():
    torch.manual_seed(0)
    ref, lengths = torch.randn(2, 8, 4), torch.tensor([8, 5])
    ref = ref * (torch.arange(8)[None] < lengths[:, None]).unsqueeze(-1)
    slow, slow_lengths = _slowed(ref, lengths)
    fr = slow + 0.5 * torch.randn_like(slow) * (torch.arange(16)[None] < slow_lengths[:, None]).unsqueeze(-1)
    streams = {"fr_feats": fr, "fr_feats_lengths": slow_lengths}
    seen = []

    def score_fn(y, l):  # a perfect corrector: it points at the reference on the hypothesis' own timing
        seen.append((y.shape, l.clone()))
        return -(dtw_warped_reference(ref, lengths, y, l) - y)

    comb = CombinedCriterion([{"name": "delta", "conf": {"hypothesis": "free_running", "align": "dtw"}}])
    loss, _ = comb(ref=ref, lengths=lengths, score_fn=score_fn, streams=streams)
    assert seen[0][0] == fr.shape and torch.equal(seen[0][1], slow_lengths)
    assert float(loss) < 1e-10
    assert float(comb(ref=ref, lengths=lengths, score_fn=lambda y, l: torch.zeros_like(y), streams=streams)[0]) > 0
    with pytest.raises(ValueError, match="align: dtw"):
        CombinedCriterion([{"name": "delta", "conf": {"hypothesis": "free_running"}}])(
            ref=ref, lengths=lengths, score_fn=score_fn, streams=streams)
    with pytest.raises(ValueError, match="align"):
        DeltaScore(align="soft")


def test_registry():
    assert set(CRITERIA) == {"binary_nce", "ranking_nce", "delta", "dsm"}
    with pytest.raises(ValueError, match="unknown criterion"):
        build_criterion("hinge")
    with pytest.raises(ValueError, match="hypothesis"):
        DeltaScore().make_hypothesis(torch.zeros(1, 2, 3), torch.tensor([2]))
