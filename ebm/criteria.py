"""Training criteria for the energy network, in one registry.

Two kinds, told apart by the class attribute ``kind``:

``kind == "energy"`` (NCE-type; :class:`BinaryNCE`, :class:`RankingNCE`)::

    loss, stats = criterion(e_pos, e_neg)

    e_pos: (B,) energies of the references.
    e_neg: (B,) or (B, K) energies of negatives aligned with the positives, or a dict
           ``type -> (B,) | (B, K) | (energies (n,), index (n,))`` so that statistics are logged per negative type;
           the ``(energies, index)`` form is for negatives drawn for a subset of the batch (``index`` = the rows of
           ``e_pos`` they belong to), as :class:`ebm.negative_samplers.MixedSampler` gives in ``sample`` mode.

``kind == "score"`` (score-type; :class:`DeltaScore`, :class:`DenoisingScoreMatching`)::

    hyp, hyp_lengths, extra = criterion.make_hypothesis(ref, lengths, **streams)   # optional, see below
    energy, grad = net.energy_and_grad(text, text_lengths, hyp, lengths, create_graph=True)
    loss, stats = criterion(hyp=hyp, ref=ref, lengths=lengths, grad=grad, **extra)

    hyp, ref: (B, T, D) normalised mels of equal lengths; grad = dE/dhyp (B, T, D), built with
    ``create_graph=True`` so that the loss trains the network through its gradient. Padded frames are ignored.
    ``make_hypothesis`` draws the hypothesis the criterion is defined on (DSM: noisy reference, with ``sigma`` in
    ``extra``; delta: the configured sampler, e.g. noisy reference or teacher-forced stream). A hypothesis with
    its own timing (delta with ``align: dtw`` on the free-running stream) has its own lengths, and ``extra["ref"]``
    is then the reference warped onto them.

:class:`CombinedCriterion` takes both kinds at once::

    loss, stats = combined(e_pos=..., e_neg=..., ref=feats, lengths=feats_lengths,
                           score_fn=lambda y, l: net.energy_and_grad(text, text_lengths, y, l, create_graph=True)[1],
                           streams={"tf_feats": ..., "tf_feats_lengths": ...})

Every criterion returns ``(loss: scalar tensor, stats: dict[str, float])``; stats are plain floats, as ESPnet's
trainer wants them.
"""

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ebm.energy_network import valid_mask

NegEnergies = Union[torch.Tensor, Mapping[str, Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]]]


def _float(x: torch.Tensor) -> float:
    return float(x.detach().float().mean()) if x.numel() else float("nan")


def _collect_negatives(e_pos: torch.Tensor, e_neg: NegEnergies) -> List[Tuple[str, torch.Tensor, torch.Tensor]]:
    """Normalise every accepted ``e_neg`` form to a list of (type, E- (n,), matching E+ (n,)) pairs."""
    if isinstance(e_neg, torch.Tensor):
        e_neg = {"neg": e_neg}
    groups = []
    for name, value in e_neg.items():
        if isinstance(value, (tuple, list)):
            energies, index = value
            pos = e_pos[index.to(e_pos.device)]
            if energies.dim() == 2:
                pos = pos.unsqueeze(1).expand_as(energies)
        else:
            energies = value
            if energies.size(0) != e_pos.size(0):
                raise ValueError(f"negatives {name!r}: batch {energies.size(0)} != positives {e_pos.size(0)}; "
                                 "pass (energies, index) for negatives of a subset of the batch")
            pos = e_pos.unsqueeze(1).expand_as(energies) if energies.dim() == 2 else e_pos
        groups.append((name, energies.reshape(-1), pos.reshape(-1)))
    if not groups:
        raise ValueError("no negatives given")
    return groups


def _energy_stats(e_pos: torch.Tensor, groups) -> Dict[str, float]:
    """Mean energies and ranking accuracy (E+ < E-) per negative type: the diagnostics NCE training needs."""
    stats = {"e_pos": _float(e_pos)}
    all_neg, all_acc = [], []
    for name, neg, pos in groups:
        acc = (pos < neg).float()
        stats[f"e_neg_{name}"] = _float(neg)
        stats[f"acc_{name}"] = _float(acc)
        all_neg.append(neg)
        all_acc.append(acc)
    stats["e_neg"] = _float(torch.cat(all_neg))
    stats["acc"] = _float(torch.cat(all_acc))
    return stats


class AbsCriterion(nn.Module):
    """Marker base: ``kind`` tells the model wrapper which inputs the criterion consumes.

    Score criteria also say whether they draw their own hypothesis (``draws_hypothesis``).
    """

    kind = "energy"
    draws_hypothesis = False


class BinaryNCE(AbsCriterion):
    """Binary NCE without a noise-density term (as in residual EBMs for text, Deng et al. 2020).

    ``loss = mean softplus(E+) + mean softplus(-E-) [+ alpha * mean(E+^2 ++ E-^2)]``, i.e. -log sigmoid(-E+) -
    log sigmoid(E-) written with softplus for numerical stability. Positives and negatives are averaged
    separately, so the loss does not change scale with the number of negatives per positive. The optional
    ``alpha`` penalty (Du & Mordatch 2019) keeps energies near zero, where sigmoid is not saturated.
    """

    kind = "energy"

    def __init__(self, alpha: float = 0.0):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, e_pos: torch.Tensor, e_neg: NegEnergies) -> Tuple[torch.Tensor, Dict[str, float]]:
        groups = _collect_negatives(e_pos, e_neg)
        neg = torch.cat([g[1] for g in groups])
        loss_pos = F.softplus(e_pos).mean()
        loss_neg = F.softplus(-neg).mean()
        loss = loss_pos + loss_neg
        stats = _energy_stats(e_pos, groups)
        if self.alpha > 0:
            reg = torch.cat([e_pos.reshape(-1), neg]).pow(2).mean()
            loss = loss + self.alpha * reg
            stats["energy_reg"] = _float(reg)
        stats.update(loss=_float(loss), loss_pos=_float(loss_pos), loss_neg=_float(loss_neg))
        return loss, stats


class RankingNCE(AbsCriterion):
    """InfoNCE over one positive and its K negatives: cross-entropy of logits -[E+, E-_1..E-_K], target 0.

    The partition function cancels exactly within each softmax, so this is the NCE form with no density
    assumption. Negatives must be aligned with the positives (dict values of shape (B,) or (B,K), or a (B,K)
    tensor); subset-form negatives would give positives different numbers of competitors and are refused.
    """

    kind = "energy"

    def __init__(self, alpha: float = 0.0, temperature: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def forward(self, e_pos: torch.Tensor, e_neg: NegEnergies) -> Tuple[torch.Tensor, Dict[str, float]]:
        groups = _collect_negatives(e_pos, e_neg)
        values = [e_neg] if isinstance(e_neg, torch.Tensor) else list(e_neg.values())
        cols = []
        for v in values:
            if isinstance(v, (tuple, list)):
                raise ValueError("RankingNCE needs negatives for every positive; got (energies, index) subset form")
            cols.append(v.unsqueeze(1) if v.dim() == 1 else v)
        neg = torch.cat(cols, dim=1)  # (B, K)
        logits = -torch.cat([e_pos.unsqueeze(1), neg], dim=1) / self.temperature
        target = torch.zeros(e_pos.size(0), dtype=torch.long, device=e_pos.device)
        loss = F.cross_entropy(logits, target)
        stats = _energy_stats(e_pos, groups)
        stats["acc_all"] = _float((e_pos.unsqueeze(1) < neg).all(dim=1).float())
        if self.alpha > 0:
            reg = torch.cat([e_pos.reshape(-1), neg.reshape(-1)]).pow(2).mean()
            loss = loss + self.alpha * reg
            stats["energy_reg"] = _float(reg)
        stats["loss"] = _float(loss)
        return loss, stats


def _frame_mean(per_frame: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames of each utterance, then over the batch: long utterances do not dominate."""
    valid = valid_mask(lengths.to(per_frame.device), per_frame.size(1)).to(per_frame.dtype)
    per_utt = (per_frame * valid).sum(1) / lengths.to(per_frame.device).clamp(min=1).to(per_frame.dtype)
    return per_utt.mean()


def _score_stats(neg_grad: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> Dict[str, float]:
    """How well -dE/dY points at the target, independent of scale (cosine) and its size (norms per frame)."""
    valid = valid_mask(lengths.to(target.device), target.size(1))
    g = neg_grad.detach()[valid]
    t = target.detach()[valid]
    cos = F.cosine_similarity(g.reshape(1, -1), t.reshape(1, -1), dim=1) if g.numel() else torch.tensor(float("nan"))
    return {
        "score_cos": _float(cos),
        "grad_norm": _float(g.norm(dim=-1)) if g.numel() else float("nan"),
        "target_norm": _float(t.norm(dim=-1)) if t.numel() else float("nan"),
    }


def _build_hypothesis_sampler(spec):
    if spec is None or isinstance(spec, nn.Module):
        return spec
    from ebm.negative_samplers import build_sampler  # late import: samplers do not depend on criteria

    if isinstance(spec, str):
        return build_sampler(spec)
    return build_sampler(spec["name"], **dict(spec.get("conf") or {}))


def dtw_warped_reference(ref: torch.Tensor, lengths: torch.Tensor, hyp: torch.Tensor,
                         hyp_lengths: torch.Tensor) -> torch.Tensor:
    """The reference carried onto each hypothesis' own timing along their DTW path, (B, T_hyp, D).

    A free-running hypothesis has its own durations, so ``Y+ - Y-`` is undefined frame by frame; each hypothesis
    frame gets the mean of the reference frames DTW pairs it with, the same pairing MCD is scored on. No
    gradient flows through the alignment.
    """
    from ebm.metrics import dtw_path  # late import: it pulls in librosa and pysptk, which only this needs

    r, h = ref.detach().float().cpu().numpy(), hyp.detach().float().cpu().numpy()
    out = np.zeros(h.shape, dtype=np.float32)
    for b in range(h.shape[0]):
        n, m = int(lengths[b]), int(hyp_lengths[b])
        if n == 0 or m == 0:
            continue
        i, j = dtw_path(r[b, :n], h[b, :m])
        acc = np.zeros((m, r.shape[-1]))
        np.add.at(acc, j, r[b, i])
        out[b, :m] = acc / np.bincount(j, minlength=m)[:, None]
    return torch.from_numpy(out).to(device=hyp.device, dtype=hyp.dtype)


class DeltaScore(AbsCriterion):
    """Score ("delta") criterion of the follow-up (Sun & Ragni 2025): train -dE/dY at Y- to point at Y+ - Y-.

    ``loss = mean_utt mean_valid_frames || -grad - scale * (Y+ - Y-) ||^2`` (squared norm over mel bins). With the
    target displacement, a single Langevin step of size 1 without noise maps the hypothesis onto the reference,
    which makes the energy's gradient useful even where NCE only ranks. ``scale`` < 1 asks for a fraction of the
    displacement (a smaller, safer step). ``hypothesis`` (sampler name or ``{name, conf}``) lets the criterion
    draw its own Y- (``make_hypothesis``); without it the caller passes ``hyp``. ``align: dtw`` takes hypotheses
    of other lengths (``free_running``: what Langevin decoding actually starts from) and sets Y+ to the reference
    warped onto each hypothesis' timing (:func:`dtw_warped_reference`).
    """

    kind = "score"

    def __init__(self, scale: float = 1.0, hypothesis: Optional[Union[str, Dict[str, Any], nn.Module]] = None,
                 align: Optional[str] = None):
        super().__init__()
        if align not in (None, "none", "dtw"):
            raise ValueError(f"DeltaScore: align must be null or 'dtw', not {align!r}")
        self.scale = float(scale)
        self.hypothesis = _build_hypothesis_sampler(hypothesis)
        self.draws_hypothesis = self.hypothesis is not None
        self.align = align

    def make_hypothesis(self, ref: torch.Tensor, lengths: torch.Tensor, **streams):
        """``(hyp, hyp_lengths, extra)``; with ``align: dtw``, ``extra["ref"]`` is the warped reference."""
        if self.hypothesis is None:
            raise ValueError("DeltaScore has no 'hypothesis' sampler configured: pass hyp to forward")
        hyp, hyp_lengths = self.hypothesis(ref, lengths, **streams)
        if self.align == "dtw":
            return hyp.detach(), hyp_lengths, {"ref": dtw_warped_reference(ref, lengths, hyp, hyp_lengths)}
        if not torch.equal(hyp_lengths.cpu(), lengths.cpu()):
            raise ValueError("DeltaScore needs hypotheses of the reference's lengths (set align: dtw for "
                             "hypotheses with their own timing, e.g. free_running)")
        return hyp.detach(), hyp_lengths, {}

    def forward(self, hyp: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, grad: torch.Tensor,
                **_) -> Tuple[torch.Tensor, Dict[str, float]]:
        if hyp.shape != ref.shape or grad.shape != ref.shape:
            raise ValueError(f"shapes differ: hyp {tuple(hyp.shape)}, ref {tuple(ref.shape)}, grad {tuple(grad.shape)}")
        target = self.scale * (ref - hyp).detach()
        loss = _frame_mean((-grad - target).pow(2).sum(-1), lengths)
        stats = _score_stats(-grad, target, lengths)
        stats["loss"] = _float(loss)
        return loss, stats


class DenoisingScoreMatching(AbsCriterion):
    """Denoising score matching (Vincent 2011) on noisy references Y- = Y+ + sigma * N, sigma log-uniform.

    ``target="displacement"`` (default): -grad -> Y+ - Y- = -sigma * N, i.e. the delta criterion on
    noisy references. Chosen as default because the energy network has no noise-level input: one time-independent
    field must serve all sigmas, and a displacement target keeps its magnitude proportional to the distance from
    the data, which is what a Langevin step of fixed size needs.
    ``target="score"``: the classical DSM target (Y+ - Y-) / sigma^2 (the score of the Gaussian perturbation
    kernel), with Song & Ermon's sigma^2 weighting so every noise level contributes O(1):
    ``sigma^2 * || -grad - (Y+ - Y-)/sigma^2 ||^2 = || sigma * (-grad) - (Y+ - Y-)/sigma ||^2``.
    Its minimiser is the score of the sigma-smoothed data density, averaged over the sigma range.
    """

    kind = "score"
    draws_hypothesis = True

    def __init__(self, sigma_min: float = 0.05, sigma_max: float = 1.0, target: str = "displacement"):
        super().__init__()
        if not 0 < sigma_min <= sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
        if target not in ("displacement", "score"):
            raise ValueError(f"target must be 'displacement' or 'score', got {target!r}")
        self.sigma_min, self.sigma_max, self.target = float(sigma_min), float(sigma_max), target

    def sample_sigma(self, batch: int, device=None) -> torch.Tensor:
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return torch.exp(torch.empty(batch, device=device).uniform_(lo, hi))

    def make_hypothesis(self, ref: torch.Tensor, lengths: torch.Tensor, **_):
        sigma = self.sample_sigma(ref.size(0), ref.device).to(ref.dtype)
        valid = valid_mask(lengths.to(ref.device), ref.size(1)).unsqueeze(-1).to(ref.dtype)
        hyp = (ref + sigma.view(-1, 1, 1) * torch.randn_like(ref)) * valid
        return hyp.detach(), lengths, {"sigma": sigma}

    def forward(self, hyp: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, grad: torch.Tensor,
                sigma: Optional[torch.Tensor] = None, **_) -> Tuple[torch.Tensor, Dict[str, float]]:
        disp = (ref - hyp).detach()
        if self.target == "displacement":
            pred, target = -grad, disp
        else:
            if sigma is None:
                raise ValueError("DenoisingScoreMatching(target='score') needs the sigma used for hyp")
            s = sigma.to(ref.dtype).view(-1, 1, 1)
            pred, target = s * (-grad), disp / s
        loss = _frame_mean((pred - target).pow(2).sum(-1), lengths)
        stats = _score_stats(-grad, disp, lengths)
        stats["loss"] = _float(loss)
        return loss, stats


CRITERIA = {
    "binary_nce": BinaryNCE,
    "ranking_nce": RankingNCE,
    "delta": DeltaScore,
    "dsm": DenoisingScoreMatching,
}


def build_criterion(name: str, **conf) -> nn.Module:
    """``name`` from :data:`CRITERIA` (or ``combined`` with ``criteria=[...]``) with its keyword config."""
    if name == "combined":
        return CombinedCriterion(**conf)
    try:
        cls = CRITERIA[name]
    except KeyError:
        raise ValueError(f"unknown criterion {name!r}; choose from {sorted(CRITERIA) + ['combined']}") from None
    return cls(**conf)


class CombinedCriterion(AbsCriterion):
    """Weighted sum of criteria, configured as a YAML-style list::

        [{name: binary_nce, weight: 1.0, conf: {alpha: 0.01}}, {name: delta, weight: 1.0}]

    Stats of each member are prefixed with its ``label`` (default: its name; repeated names get ``_2``...).
    Energy members get ``e_pos``/``e_neg``. Score members either draw their own hypothesis (``make_hypothesis``)
    and call ``score_fn(hyp, lengths) -> grad`` (the caller's closure over the network and the text, with
    ``create_graph=True``), or, when they have no hypothesis sampler, use the ``hyp``/``grad`` passed in.
    """

    kind = "combined"

    def __init__(self, criteria: Sequence[Mapping[str, Any]]):
        super().__init__()
        if not criteria:
            raise ValueError("CombinedCriterion needs at least one criterion")
        self.members = nn.ModuleDict()
        self.weights: Dict[str, float] = {}
        for spec in criteria:
            name = spec["name"]
            label = spec.get("label", name)
            base, i = label, 2
            while label in self.members:
                label, i = f"{base}_{i}", i + 1
            self.members[label] = build_criterion(name, **dict(spec.get("conf") or {}))
            self.weights[label] = float(spec.get("weight", 1.0))

    @property
    def needs_energies(self) -> bool:
        return any(m.kind == "energy" for m in self.members.values())

    @property
    def needs_score(self) -> bool:
        return any(m.kind == "score" for m in self.members.values())

    def forward(
        self,
        e_pos: Optional[torch.Tensor] = None,
        e_neg: Optional[NegEnergies] = None,
        ref: Optional[torch.Tensor] = None,
        lengths: Optional[torch.Tensor] = None,
        score_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
        hyp: Optional[torch.Tensor] = None,
        grad: Optional[torch.Tensor] = None,
        streams: Optional[Mapping[str, Any]] = None,
        **extra,
    ) -> Tuple[torch.Tensor, Dict[str, float]]:
        total = None
        stats: Dict[str, float] = {}
        for label, member in self.members.items():
            if member.kind == "energy":
                if e_pos is None or e_neg is None:
                    raise ValueError(f"criterion {label!r} needs e_pos and e_neg")
                loss, st = member(e_pos, e_neg)
            else:
                if ref is None or lengths is None:
                    raise ValueError(f"criterion {label!r} needs ref and lengths")
                if member.draws_hypothesis and score_fn is not None:
                    h, hl, ex = member.make_hypothesis(ref, lengths, **dict(streams or {}))
                    r = ex.pop("ref", ref)  # an aligned criterion brings its own target, on the hypothesis' timing
                    loss, st = member(hyp=h, ref=r, lengths=hl, grad=score_fn(h, hl), **ex)
                elif hyp is not None and grad is not None:
                    loss, st = member(hyp=hyp, ref=ref, lengths=lengths, grad=grad, **extra)
                else:
                    raise ValueError(f"criterion {label!r} needs score_fn (to draw its own hypothesis) "
                                     "or hyp and grad")
            weighted = self.weights[label] * loss
            total = weighted if total is None else total + weighted
            stats.update({f"{label}_{k}": v for k, v in st.items()})
        stats["loss"] = _float(total)
        return total, stats


__all__ = [
    "AbsCriterion", "BinaryNCE", "RankingNCE", "DeltaScore", "DenoisingScoreMatching", "CombinedCriterion",
    "CRITERIA", "build_criterion", "dtw_warped_reference",
]
