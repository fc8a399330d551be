"""Product of experts: the weighted energy sum that Langevin decoding runs on when EBMs are composed."""

import types

import pytest
import torch

from ebm.energy_network import EnergyNetwork, valid_mask
from ebm.langevin import LangevinSampler
from ebm.product_of_experts import ProductOfExperts, check_compatible


def _net(seed):
    torch.manual_seed(seed)
    return EnergyNetwork(vocab_size=10, odim=8, adim=16, aheads=2, elayers=1, eunits=32, dlayers=1, dunits=32,
                         prenet_layers=1, prenet_chans=16, head_units=16).eval()


def _batch():
    text = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    lengths = torch.tensor([12, 7])
    feats = torch.randn(2, 12, 8, generator=torch.Generator().manual_seed(3)) * valid_mask(lengths, 12).unsqueeze(-1)
    return text, torch.tensor([4, 2]), feats, lengths


def test_energy_and_gradient_are_the_weighted_sums():
    a, b = _net(0), _net(1)
    text, tl, feats, lengths = _batch()
    ea, ga = a.energy_and_grad(text, tl, feats, lengths)
    eb, gb = b.energy_and_grad(text, tl, feats, lengths)
    e, g = ProductOfExperts([a, b], [0.7, 0.3]).energy_and_grad(text, tl, feats, lengths)
    torch.testing.assert_close(e, 0.7 * ea + 0.3 * eb)
    torch.testing.assert_close(g, 0.7 * ga + 0.3 * gb)
    assert (g[1, 7:] == 0).all()  # padding stays out of the chain
    with torch.no_grad():
        torch.testing.assert_close(ProductOfExperts([a, b], [0.7, 0.3])(text, tl, feats, lengths), e)


def test_a_chain_on_one_expert_split_in_two_is_the_chain_on_that_expert():
    net = _net(0)
    text, tl, feats, lengths = _batch()
    sampler = LangevinSampler(steps=3, step_size=0.05, seed=0)
    alone = sampler.run(net, text, tl, feats, lengths)
    halves = sampler.run(ProductOfExperts([net, net], [0.5, 0.5]), text, tl, feats, lengths)
    torch.testing.assert_close(halves.feats, alone.feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(halves.energies, alone.energies, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("weights, match", [([0.5], "one weight per network"), ([1.0, -0.2], "must be positive"),
                                            ([1.0, 0.0], "must be positive")])
def test_bad_weights_are_refused(weights, match):
    with pytest.raises(ValueError, match=match):
        ProductOfExperts([_net(0), _net(1)], weights)


class _Norm(torch.nn.Module):
    def __init__(self, mean):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))


def test_experts_must_share_tokens_and_statistics():
    args = types.SimpleNamespace(token_list=["<blank>", "a", "b"])
    model = types.SimpleNamespace(normalize=_Norm([0.0, 1.0]))
    check_compatible(model, args, types.SimpleNamespace(normalize=_Norm([0.0, 1.0])), args, "e")
    with pytest.raises(ValueError, match="the expert x.pth has another token list"):
        check_compatible(model, args, model, types.SimpleNamespace(token_list=["<blank>", "b", "a"]),
                         "the expert x.pth")
    with pytest.raises(ValueError, match="the expert y.pth normalises features with other statistics"):
        check_compatible(model, args, types.SimpleNamespace(normalize=_Norm([0.0, 2.0])), args, "the expert y.pth")
    with pytest.raises(ValueError, match="other statistics"):
        check_compatible(model, args, types.SimpleNamespace(normalize=None), args, "e")
