"""The EBM model wrapper: the refinement gain it validates with, and the streams its criteria receive."""

import pytest
import torch

from ebm.energy_network import EnergyNetwork
from ebm.espnet_model import ESPnetEBMModel


class Quadratic(torch.nn.Module):
    """E = 0.5 * ||Y - target||^2 over valid frames: one raw step of size 1 lands exactly on the target."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def energy_and_grad(self, text, text_lengths, y, lengths, create_graph=False):
        valid = (torch.arange(y.size(1))[None] < lengths[:, None]).unsqueeze(-1).to(y.dtype)
        g = (y - self.target[:, :y.size(1)]) * valid
        return 0.5 * g.pow(2).sum((1, 2)), g


def _batch():
    torch.manual_seed(0)
    lengths = torch.tensor([12, 9])
    ref = torch.randn(2, 12, 8) * (torch.arange(12)[None] < lengths[:, None]).unsqueeze(-1)
    return torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 2]), ref, lengths


@pytest.mark.parametrize("normalize,expected", [(False, 1.0), (True, None)])
def test_refinement_gain_raw_step_lands_on_the_predicted_reference(normalize, expected):
    text, tl, ref, lengths = _batch()
    model = ESPnetEBMModel(None, None, Quadratic(ref), samplers=[], criteria=[{"name": "delta"}],
                           refine_steps=1, refine_step_size=1.0 if not normalize else 0.05,
                           refine_normalize=normalize)
    tf = ref + 0.5 * torch.randn_like(ref)
    stats = model.refinement_gain(text, tl, ref, lengths, {"tf_feats": tf})
    assert stats["refine_dist0"] > 0.1
    if expected is not None:
        assert stats["refine_gain"] == pytest.approx(expected, abs=1e-6)
    else:  # a normalised step of RMS 0.05 moves only part of the way
        assert 0 < stats["refine_gain"] < 0.5


def test_refinement_gain_from_free_running_uses_the_warped_reference():
    """``refine_from: free_running`` starts from the free-running output (its own length) and measures against
    the reference carried onto its timing: a step onto that warped reference is a gain of 1."""
    text, tl, ref, lengths = _batch()
    slow = ref.repeat_interleave(2, dim=1)  # twice as slow: each reference frame held for two frames
    fr_lengths = 2 * lengths
    model = ESPnetEBMModel(None, None, Quadratic(slow), samplers=[], criteria=[{"name": "delta"}],
                           refine_steps=1, refine_step_size=1.0, refine_normalize=False,
                           refine_from="free_running")
    fr = slow + 0.01 * torch.randn_like(slow)
    stats = model.refinement_gain(text, tl, ref, lengths, {"fr_feats": fr, "fr_feats_lengths": fr_lengths})
    assert stats["refine_dist0"] > 0
    assert stats["refine_gain"] == pytest.approx(1.0, abs=1e-5)
    # against the unwarped reference (teacher-forced path), the same step would not look like a gain of 1
    tf_model = ESPnetEBMModel(None, None, Quadratic(slow), samplers=[], criteria=[{"name": "delta"}],
                              refine_steps=1, refine_step_size=1.0, refine_normalize=False)
    assert tf_model.refinement_gain(text, tl, ref, lengths, {"tf_feats": fr[:, :12]})["refine_gain"] < 0.9
    with pytest.raises(ValueError, match="fr_feats"):
        model.refinement_gain(text, tl, ref, lengths, {})
    with pytest.raises(ValueError, match="refine_from"):
        ESPnetEBMModel(None, None, Quadratic(slow), samplers=[], criteria=[{"name": "delta"}], refine_from="own")


def test_refinement_gain_squared_and_euclidean_disagree_on_a_step_that_fixes_outliers():
    """A step that fixes the few frames far off and slightly harms every other one lowers the squared distance
    (a gain) and raises the per-frame Euclidean distance (a loss): ``refine_distance`` picks which one selects
    checkpoints, and both are logged."""
    text, tl, ref, lengths = _batch()
    hyp = ref + 0.3
    hyp[0, 0] += 1.82                        # one frame far off (2.12 per bin)
    stepped = ref + 0.45                     # the typical frame 0.45 off instead of 0.3, the far one fixed
    for distance in ("squared", "euclidean"):
        model = ESPnetEBMModel(None, None, Quadratic(stepped), samplers=[], criteria=[{"name": "delta"}],
                               refine_steps=1, refine_step_size=1.0, refine_normalize=False,
                               refine_distance=distance)
        stats = model.refinement_gain(text, tl, ref, lengths, {"tf_feats": hyp})
        assert stats["refine_gain_squared"] > 0.2 and stats["refine_gain_euclidean"] < -0.1
        assert stats["refine_gain"] == stats[f"refine_gain_{distance}"]
    with pytest.raises(ValueError, match="refine_distance"):
        ESPnetEBMModel(None, None, Quadratic(ref), samplers=[], criteria=[{"name": "delta"}], refine_distance="l1")


def test_delta_on_the_models_own_langevin_samples():
    """A hypothesis sampler that runs the model (``langevin``) gets the model's energy function from the wrapper."""
    torch.manual_seed(0)
    net = EnergyNetwork(vocab_size=6, odim=8, adim=16, aheads=2, elayers=1, eunits=16, dlayers=1, dunits=16,
                        prenet_layers=1, prenet_chans=8, head_units=8, pooling="sum")
    own = {"name": "langevin", "conf": {"init": "teacher_forced", "init_sigma": 0.0, "steps": 1, "step_size": 1.0,
                                        "sigma": 0.0}}
    model = ESPnetEBMModel(None, None, net, samplers=[],
                           criteria=[{"name": "delta", "label": "delta_own", "conf": {"hypothesis": own}}])
    text, tl, ref, lengths = _batch()
    tf = ref + 0.3 * torch.randn_like(ref)
    loss, stats, _ = model(text, tl, ref, lengths, tf_feats=tf, tf_feats_lengths=lengths)
    assert torch.isfinite(loss) and "delta_own_loss" in stats
    loss.backward()
    # the loss is on dE/dY, so weights get gradients (a final bias cannot: it does not change dE/dY)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.frame_head.parameters() if p.dim() > 1)
