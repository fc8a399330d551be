"""A product of experts: several trained EBMs sampled as one, E(x, Y) = sum_k w_k E_k(x, Y).

Energies add when densities multiply, so EBMs compose without retraining. The experts trained here correct
different errors of Tacotron 2: one trained on teacher-forced hypotheses sharpens the spectrum (MCD) and voices
more frames, one that also saw free-running hypotheses unvoices them (log-F0 RMSE). A weighted sum trades the two
off at decoding time, and the weights are searched on dev like lambda. Langevin decoding needs only
``energy_and_grad``, so the product is used wherever one energy network is.

The experts must read the same inputs: the same token list and the same feature normalisation (Langevin runs in
one normalised space), which :func:`check_compatible` enforces.
"""

from typing import Sequence, Tuple

import torch
from torch import nn

from ebm.energy_network import noise_kwargs


class ProductOfExperts(nn.Module):
    """``sum_k weights[k] * networks[k]`` as one energy network (energies (B,) and gradients (B,T,D))."""

    def __init__(self, networks: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        if len(networks) == 0 or len(networks) != len(weights):
            raise ValueError(f"a product of experts needs one weight per network, got {len(networks)} networks and "
                             f"{len(weights)} weights")
        if any(not float(w) > 0 for w in weights):
            raise ValueError(f"expert weights must be positive (a negative one rewards what that expert rejects), "
                             f"got {list(weights)}")
        kinds = {bool(getattr(net, "noise_conditional", False)) for net in networks}
        if len(kinds) > 1:
            raise ValueError("a product of experts cannot mix noise-conditional energy networks with others: they "
                             "are decoded differently (annealed or not)")
        self.networks = nn.ModuleList(networks)
        self.weights = [float(w) for w in weights]

    @property
    def noise_conditional(self) -> bool:
        """All experts read a noise level (annealed decoding), or none does; a mix is refused at construction."""
        return bool(getattr(self.networks[0], "noise_conditional", False))

    def forward(self, text, text_lengths, feats, feats_lengths, sigma=None) -> torch.Tensor:
        return sum(w * net(text, text_lengths, feats, feats_lengths, **noise_kwargs(sigma))
                   for w, net in zip(self.weights, self.networks))

    def energy_and_grad(self, text, text_lengths, feats, feats_lengths, create_graph: bool = False,
                        sigma=None) -> Tuple[torch.Tensor, torch.Tensor]:
        energy, grad = None, None
        for w, net in zip(self.weights, self.networks):
            e, g = net.energy_and_grad(text, text_lengths, feats, feats_lengths, create_graph=create_graph,
                                       **noise_kwargs(sigma))
            energy = w * e if energy is None else energy + w * e
            grad = w * g if grad is None else grad + w * g
        return energy, grad


def _normalisation(model):
    norm = getattr(model, "normalize", None)
    if norm is None:
        return None
    return {k: v.detach().cpu() for k, v in norm.state_dict().items()}


def check_compatible(first, first_args, other, other_args, what: str) -> None:
    """Refuse an expert that reads other tokens or another normalisation than the first one (``what`` names it)."""
    if list(getattr(first_args, "token_list", []) or []) != list(getattr(other_args, "token_list", []) or []):
        raise ValueError(f"{what} has another token list than the first EBM; experts must be trained on the same "
                         "tokens (the same recipe's stage 2)")
    a, b = _normalisation(first), _normalisation(other)
    if (a is None) != (b is None) or (a is not None and (a.keys() != b.keys() or any(
            a[k].shape != b[k].shape or not torch.allclose(a[k].float(), b[k].float()) for k in a))):
        raise ValueError(f"{what} normalises features with other statistics than the first EBM; experts must "
                         "share the recipe's feature statistics (stage 2), since Langevin runs in one normalised space")
