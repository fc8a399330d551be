"""EnergyNetwork: padding invariance, mel gradients for Langevin/score training, size, no batch norm."""

import pytest
import torch

from ebm.energy_network import EnergyNetwork, count_parameters

VOCAB, ODIM = 41, 80
SMALL = dict(vocab_size=VOCAB, odim=ODIM, adim=32, aheads=2, elayers=1, eunits=64, dlayers=2, dunits=64,
             prenet_layers=2, prenet_chans=16, prenet_kernel=5, head_units=16)



def _pair(seed=0):
    """One utterance alone, and the same utterance padded (extra frames/tokens) in a batch with a longer one."""
    g = torch.Generator().manual_seed(seed)
    t1 = torch.randint(1, VOCAB, (1, 7), generator=g)
    y1 = torch.randn(1, 23, ODIM, generator=g)
    text = torch.full((2, 12), -32768)  # ESPnet's collate pads integer streams with a negative value
    text[0, :7] = t1[0]
    text[1] = torch.randint(1, VOCAB, (12,), generator=g)
    feats = torch.zeros(2, 45, ODIM)
    feats[0, :23] = y1[0]
    feats[1, :40] = torch.randn(40, ODIM, generator=g)  # frames 40..44 are padding of the longer row too
    return (t1, torch.tensor([7]), y1, torch.tensor([23])), (text, torch.tensor([7, 12]), feats, torch.tensor([23, 40]))


@pytest.mark.parametrize("pooling", ["attention", "mean", "sum"])
@pytest.mark.parametrize("use_sdpa", [False, True])
def test_padding_invariance(pooling, use_sdpa):
    torch.manual_seed(0)
    net = EnergyNetwork(pooling=pooling, use_sdpa=use_sdpa, **SMALL).eval()
    alone, batched = _pair()
    with torch.no_grad():
        e1, f1, w1 = net(*alone, return_frames=True)
        e2, f2, w2 = net(*batched, return_frames=True)
    torch.testing.assert_close(e2[0], e1[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f2[0, :23], f1[0], rtol=1e-5, atol=1e-5)
    assert torch.all(f2[0, 23:] == 0) and torch.all(w2[0, 23:] == 0)
    torch.testing.assert_close(w2[0].sum(), w1[0].sum())
    # the long row really is different data: the check is not vacuous
    assert not torch.allclose(e2[1], e2[0])


def test_padding_values_do_not_leak():
    """Garbage in padded frames must not change the energy (inputs are masked, not trusted to be zero)."""
    net = EnergyNetwork(**SMALL).eval()
    _, (text, tl, feats, fl) = _pair()
    dirty = feats.clone()
    dirty[0, 23:] = 5.0
    with torch.no_grad():
        torch.testing.assert_close(net(text, tl, dirty, fl), net(text, tl, feats, fl), rtol=1e-5, atol=1e-5)


def test_energy_depends_on_text_and_mel():
    net = EnergyNetwork(**SMALL).eval()
    (t, tl, y, yl), _ = _pair()
    with torch.no_grad():
        e = net(t, tl, y, yl)
        assert not torch.allclose(net(t, tl, y + 0.5, yl), e)
        assert not torch.allclose(net(t.flip(1), tl, y, yl), e)


def test_energy_and_grad_under_no_grad_and_padding():
    torch.manual_seed(1)
    net = EnergyNetwork(**SMALL).eval()
    _, (text, tl, feats, fl) = _pair()
    with torch.no_grad():
        energy, grad = net.energy_and_grad(text, tl, feats, fl)
    assert energy.shape == (2,) and grad.shape == feats.shape
    assert torch.isfinite(grad).all()
    assert grad[0, :23].abs().sum() > 0 and grad[1, :40].abs().sum() > 0
    assert torch.all(grad[0, 23:] == 0) and torch.all(grad[1, 40:] == 0)
    assert not grad.requires_grad and not energy.requires_grad
    # matches a finite difference along a random direction
    d = torch.randn_like(feats) * torch.tensor([[1.0] * 23 + [0.0] * 22, [1.0] * 40 + [0.0] * 5]).unsqueeze(-1)
    eps = 1e-3
    with torch.no_grad():
        fd = (net(text, tl, feats + eps * d, fl) - net(text, tl, feats - eps * d, fl)) / (2 * eps)
    torch.testing.assert_close(fd, (grad * d).sum((1, 2)), rtol=2e-2, atol=2e-4)


def test_per_utterance_gradient_matches_alone():
    net = EnergyNetwork(**SMALL).eval()
    alone, batched = _pair()
    _, g1 = net.energy_and_grad(*alone)
    _, g2 = net.energy_and_grad(*batched)
    torch.testing.assert_close(g2[0, :23], g1[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("use_sdpa", [False, True])
def test_create_graph_trains_parameters(use_sdpa):
    """Double backprop (the delta criterion) must reach the parameters, also with fused attention."""
    net = EnergyNetwork(use_sdpa=use_sdpa, **SMALL).train()
    _, (text, tl, feats, fl) = _pair()
    with torch.no_grad():  # as in validation: enable_grad inside energy_and_grad
        _, grad = net.energy_and_grad(text, tl, feats, fl, create_graph=True)
    assert grad.requires_grad
    grad.pow(2).sum().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert net.frame_head[0].weight.grad.abs().sum() > 0


def test_eval_determinism_and_train_dropout():
    net = EnergyNetwork(**SMALL)
    _, (text, tl, feats, fl) = _pair()
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(text, tl, feats, fl), net(text, tl, feats, fl))
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(text, tl, feats, fl), net(text, tl, feats, fl))


def test_default_size_and_no_batchnorm():
    net = EnergyNetwork(vocab_size=VOCAB)
    n = count_parameters(net)
    assert 2_000_000 <= n <= 2_600_000, n
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm, torch.nn.modules.batchnorm._NormBase)
    assert not any(isinstance(m, norms) for m in net.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())


def test_spectral_norm_option():
    net = EnergyNetwork(spectral_norm=True, **SMALL).eval()
    lin = net.frame_head[0]
    assert torch.nn.utils.parametrize.is_parametrized(lin, "weight")
    assert torch.linalg.matrix_norm(lin.weight, ord=2) <= 1.0 + 1e-3
    alone, batched = _pair()
    with torch.no_grad():
        torch.testing.assert_close(net(*batched)[0], net(*alone)[0], rtol=1e-5, atol=1e-5)


def test_bad_options():
    with pytest.raises(ValueError, match="pooling"):
        EnergyNetwork(pooling="max", **SMALL)
    with pytest.raises(ValueError, match="activation"):
        EnergyNetwork(activation="relu", **SMALL)
    with pytest.raises(ValueError, match="odd"):
        EnergyNetwork(**{**SMALL, "prenet_kernel": 4})
