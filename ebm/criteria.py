"""Training criteria for the energy network: two abstract kinds, each with one calling convention.

:class:`AbsEnergyCriterion` (NCE-type; :class:`BinaryNCE`, :class:`RankingNCE`), registered in
:data:`energy_criterion_choices`::

    loss, stats = criterion(e_pos, e_neg)

    e_pos: (B,) energies of the references.
    e_neg: (B,) or (B, K) energies of negatives aligned with the positives, or a dict
           ``type -> (B,) | (B, K) | (energies (n,), index (n,))`` so that statistics are logged per negative type;
           the ``(energies, index)`` form is for negatives drawn for a subset of the batch (``index`` = the rows of
           ``e_pos`` they belong to), as :class:`ebm.negative_samplers.MixedSampler` gives in ``sample`` mode.

:class:`AbsScoreCriterion` (score-type; :class:`DeltaScore`, :class:`DenoisingScoreMatching`), registered in
:data:`score_criterion_choices`::

    hyp, hyp_lengths, extra = criterion.make_hypothesis(ref, lengths, **streams)
    energy, grad = net.energy_and_grad(text, text_lengths, hyp, hyp_lengths, create_graph=True)
    loss, stats = criterion(hyp=hyp, ref=extra.get("ref", ref), lengths=hyp_lengths, grad=grad,
                            sigma=extra.get("sigma"))

    hyp, ref: (B, T, D) normalised mels of equal lengths; grad = dE/dhyp (B, T, D), built with
    ``create_graph=True`` so that the loss trains the network through its gradient. Padded frames are ignored.
    ``make_hypothesis`` draws the hypothesis the criterion is defined on (DSM: noisy reference, with its noise
    level ``sigma`` in ``extra``; delta: its configured :class:`ebm.negative_samplers.AbsNegativeSampler`, e.g.
    noisy reference or teacher-forced stream). A hypothesis with its own timing (delta with ``align: dtw`` on
    the free-running stream) has its own lengths, and ``extra["ref"]`` is then the reference warped onto them.
    :meth:`AbsScoreCriterion.loss_on_own_hypothesis` is exactly these three lines (a noise-conditional criterion
    also gives the network the hypothesis' ``sigma``).

:class:`CombinedCriterion` is a weighted sum of both kinds, with one calling convention::

    loss, stats = combined(ref=feats, lengths=feats_lengths, e_pos=..., e_neg=...,
                           score_fn=lambda y, l: net.energy_and_grad(text, text_lengths, y, l, create_graph=True)[1],
                           streams={"tf_feats": ..., "tf_feats_lengths": ...})

Every criterion returns ``(loss: scalar tensor, stats: dict[str, float])``; stats are plain floats, as ESPnet's
trainer wants them.
"""

import math
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from espnet2.train.class_choices import ClassChoices
from torch import nn

from ebm.alignment import dtw_warped_reference
from ebm.energy_network import valid_mask
from ebm.negative_samplers import AbsNegativeSampler, build_negative_sampler

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


class AbsEnergyCriterion(nn.Module, ABC):
    """An NCE-type criterion: a loss on the energies of references and of their negatives."""

    @abstractmethod
    def forward(self, e_pos: torch.Tensor, e_neg: NegEnergies) -> Tuple[torch.Tensor, Dict[str, float]]:
        raise NotImplementedError


class AbsScoreCriterion(nn.Module, ABC):
    """A score-type criterion: a loss on the energy's mel gradient at hypotheses it draws itself.

    ``sigma`` is the noise level a hypothesis was drawn with, for the criteria whose target depends on it.
    """

    @abstractmethod
    def make_hypothesis(self, ref: torch.Tensor, lengths: torch.Tensor,
                        **streams) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """``(hyp, hyp_lengths, extra)``; ``extra`` may hold ``ref`` (the reference on the hypothesis' timing)
        and ``sigma`` (the noise level of each row)."""
        raise NotImplementedError

    @abstractmethod
    def forward(self, hyp: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, grad: torch.Tensor,
                sigma: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
        raise NotImplementedError

    #: True for a criterion that trains a noise-conditional network: it gives ``score_fn`` the noise level too.
    noise_conditional: bool = False

    def loss_on_own_hypothesis(self, ref: torch.Tensor, lengths: torch.Tensor,
                               score_fn: Callable[..., torch.Tensor],
                               **streams) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Draw a hypothesis, ask ``score_fn(hyp, hyp_lengths)`` for dE/dhyp (``score_fn(hyp, hyp_lengths,
        sigma)`` for a noise-conditional criterion) and score it."""
        hyp, hyp_lengths, extra = self.make_hypothesis(ref, lengths, **streams)
        sigma = extra.get("sigma")
        grad = score_fn(hyp, hyp_lengths, sigma) if self.noise_conditional else score_fn(hyp, hyp_lengths)
        return self(hyp=hyp, ref=extra.get("ref", ref), lengths=hyp_lengths, grad=grad, sigma=sigma)


class BinaryNCE(AbsEnergyCriterion):
    """Binary NCE without a noise-density term (as in residual EBMs for text, Deng et al. 2020).

    ``loss = mean softplus(E+) + mean softplus(-E-) [+ alpha * mean(E+^2 ++ E-^2)]``, i.e. -log sigmoid(-E+) -
    log sigmoid(E-) written with softplus for numerical stability. Positives and negatives are averaged
    separately, so the loss does not change scale with the number of negatives per positive. The optional
    ``alpha`` penalty (Du & Mordatch 2019) keeps energies near zero, where sigmoid is not saturated.
    """

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


class RankingNCE(AbsEnergyCriterion):
    """InfoNCE over one positive and its K negatives: cross-entropy of logits -[E+, E-_1..E-_K], target 0.

    The partition function cancels exactly within each softmax, so this is the NCE form with no density
    assumption. Negatives must be aligned with the positives (dict values of shape (B,) or (B,K), or a (B,K)
    tensor); subset-form negatives would give positives different numbers of competitors and are refused.
    """

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


#: How a score criterion and the validation's refinement gain measure one frame's error ``diff`` (..., D):
#: ``squared``, its squared Euclidean norm (averaged over frames, a mean squared error, which the few frames far
#: off lead; its minimiser is the conditional mean of the correction), or ``euclidean``, its norm (averaged
#: over frames, the per-frame distance that the mel distance and MCD average; its minimiser is the conditional
#: geometric median, so a step of size 1 along it minimises the expected distance of the typical frame).
FRAME_DISTANCES = ("squared", "euclidean")


def frame_distance(diff: torch.Tensor, distance: str = "squared") -> torch.Tensor:
    """Per-frame ``distance`` (one of :data:`FRAME_DISTANCES`) of a (..., D) difference, shape (...)."""
    sq = diff.pow(2).sum(-1)
    if distance == "squared":
        return sq
    if distance == "euclidean":
        return torch.sqrt(sq + 1e-8)  # the offset keeps the gradient finite where the difference is zero
    raise ValueError(f"distance must be one of {FRAME_DISTANCES}, not {distance!r}")


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


def _build_hypothesis_sampler(spec) -> Optional[AbsNegativeSampler]:
    """A score criterion's hypothesis sampler from its config (a name or ``{name, conf}``), or as given."""
    if spec is None or isinstance(spec, AbsNegativeSampler):
        return spec
    if isinstance(spec, str):
        return build_negative_sampler(spec)
    if isinstance(spec, Mapping) and "name" in spec:
        return build_negative_sampler(spec["name"], **dict(spec.get("conf") or {}))
    raise ValueError(f"hypothesis must be a sampler name or {{name, conf}}, not {spec!r}")


class DeltaScore(AbsScoreCriterion):
    """Score ("delta") criterion of the follow-up (Sun & Ragni 2025): train -dE/dY at Y- to point at Y+ - Y-.

    ``loss = mean_utt mean_valid_frames || -grad - scale * (Y+ - Y-) ||^2`` (squared norm over mel bins;
    ``distance: euclidean`` takes the norm itself, see :data:`FRAME_DISTANCES`). With the target displacement, a
    single Langevin step of size 1 without noise maps the hypothesis onto the reference, which makes the energy's
    gradient useful even where NCE only ranks. ``scale`` < 1 asks for a fraction of the displacement (a smaller,
    safer step). ``hypothesis`` (sampler name or ``{name, conf}``) is how the criterion draws its Y-
    (``make_hypothesis``); without one it can only be called on given hypotheses. ``align: dtw``
    takes hypotheses of other lengths (``free_running``: what Langevin decoding actually starts from) and sets Y+
    to the reference warped onto each hypothesis' timing (:func:`ebm.alignment.dtw_warped_reference`).
    """

    def __init__(self, scale: float = 1.0,
                 hypothesis: Optional[Union[str, Dict[str, Any], AbsNegativeSampler]] = None,
                 align: Optional[str] = None, distance: str = "squared"):
        super().__init__()
        if align not in (None, "none", "dtw"):
            raise ValueError(f"DeltaScore: align must be null or 'dtw', not {align!r}")
        if distance not in FRAME_DISTANCES:
            raise ValueError(f"DeltaScore: distance must be one of {FRAME_DISTANCES}, not {distance!r}")
        self.distance = distance
        self.scale = float(scale)
        self.hypothesis = _build_hypothesis_sampler(hypothesis)
        self.align = align

    def make_hypothesis(self, ref: torch.Tensor, lengths: torch.Tensor, **streams):
        """``(hyp, hyp_lengths, extra)``; with ``align: dtw``, ``extra["ref"]`` is the warped reference."""
        if self.hypothesis is None:
            raise ValueError("DeltaScore has no 'hypothesis' sampler to draw from: add one to its conf, "
                             "e.g. hypothesis: {name: teacher_forced}")
        hyp, hyp_lengths = self.hypothesis(ref, lengths, **streams)
        if self.align == "dtw":
            return hyp.detach(), hyp_lengths, {"ref": dtw_warped_reference(ref, lengths, hyp, hyp_lengths)}
        if not torch.equal(hyp_lengths.cpu(), lengths.cpu()):
            raise ValueError("DeltaScore needs hypotheses of the reference's lengths (set align: dtw for "
                             "hypotheses with their own timing, e.g. free_running)")
        return hyp.detach(), hyp_lengths, {}

    def forward(self, hyp: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, grad: torch.Tensor,
                sigma: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
        if hyp.shape != ref.shape or grad.shape != ref.shape:
            raise ValueError(f"shapes differ: hyp {tuple(hyp.shape)}, ref {tuple(ref.shape)}, grad {tuple(grad.shape)}")
        target = self.scale * (ref - hyp).detach()
        loss = _frame_mean(frame_distance(-grad - target, self.distance), lengths)
        stats = _score_stats(-grad, target, lengths)
        stats["loss"] = _float(loss)
        return loss, stats


class DenoisingScoreMatching(AbsScoreCriterion):
    """Denoising score matching (Vincent 2011) on noisy references Y- = Y+ + sigma * N, sigma log-uniform.

    ``target="displacement"`` (default): -grad -> Y+ - Y- = -sigma * N, i.e. the delta criterion on
    noisy references. Chosen as default because the energy network has no noise-level input: one time-independent
    field must serve all sigmas, and a displacement target keeps its magnitude proportional to the distance from
    the data, which is what a Langevin step of fixed size needs.
    ``target="score"``: the classical DSM target (Y+ - Y-) / sigma^2 (the score of the Gaussian perturbation
    kernel), with Song & Ermon's sigma^2 weighting so every noise level contributes O(1):
    ``sigma^2 * || -grad - (Y+ - Y-)/sigma^2 ||^2 = || sigma * (-grad) - (Y+ - Y-)/sigma ||^2``.
    Its minimiser is the score of the sigma-smoothed data density, averaged over the sigma range.
    ``noise_conditional=True`` (with ``target="score"``) trains a noise-conditional network, which is told each
    hypothesis' sigma: its minimiser is then the score of the data smoothed at *that* sigma, the field annealed
    Langevin decoding follows from Tacotron 2's output down to the finest level.
    """

    def __init__(self, sigma_min: float = 0.05, sigma_max: float = 1.0, target: str = "displacement",
                 noise_conditional: bool = False):
        super().__init__()
        if not 0 < sigma_min <= sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
        if target not in ("displacement", "score"):
            raise ValueError(f"target must be 'displacement' or 'score', got {target!r}")
        if noise_conditional and target != "score":
            raise ValueError("dsm with noise_conditional: true needs target: score (a noise-conditional network "
                             "predicts the score at each level; a displacement target's size would vary with sigma)")
        self.sigma_min, self.sigma_max, self.target = float(sigma_min), float(sigma_max), target
        self.noise_conditional = bool(noise_conditional)

    def sample_sigma(self, batch: int, device=None) -> torch.Tensor:
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return torch.exp(torch.empty(batch, device=device).uniform_(lo, hi))

    def make_hypothesis(self, ref: torch.Tensor, lengths: torch.Tensor, **streams):
        sigma = self.sample_sigma(ref.size(0), ref.device).to(ref.dtype)
        valid = valid_mask(lengths.to(ref.device), ref.size(1)).unsqueeze(-1).to(ref.dtype)
        hyp = (ref + sigma.view(-1, 1, 1) * torch.randn_like(ref)) * valid
        return hyp.detach(), lengths, {"sigma": sigma}

    def forward(self, hyp: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, grad: torch.Tensor,
                sigma: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
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


energy_criterion_choices = ClassChoices(
    "energy_criterion",
    classes=dict(binary_nce=BinaryNCE, ranking_nce=RankingNCE),
    type_check=AbsEnergyCriterion,
    default="binary_nce",
)
score_criterion_choices = ClassChoices(
    "score_criterion",
    classes=dict(delta=DeltaScore, dsm=DenoisingScoreMatching),
    type_check=AbsScoreCriterion,
    default="delta",
)

#: Every name a criterion spec may take (``combined`` aside).
CRITERIA = {**energy_criterion_choices.classes, **score_criterion_choices.classes}


def build_criterion(name: str, **conf) -> nn.Module:
    """``name`` from :data:`CRITERIA` (or ``combined`` with ``criteria=[...]``) with its keyword config."""
    if name == "combined":
        return CombinedCriterion(**conf)
    for choices in (energy_criterion_choices, score_criterion_choices):
        if isinstance(name, str) and name in choices.classes:
            return choices.get_class(name)(**conf)
    raise ValueError(f"unknown criterion {name!r}; choose from {sorted(CRITERIA) + ['combined']}")


class CombinedCriterion(nn.Module):
    """Weighted sum of criteria, configured as a YAML-style list::

        [{name: binary_nce, weight: 1.0, conf: {alpha: 0.01}}, {name: delta, weight: 1.0}]

    Stats of each member are prefixed with its ``label`` (default: its name; repeated names get ``_2``...).
    Energy members get ``e_pos``/``e_neg``; score members draw their own hypotheses from ``ref``, ``lengths`` and
    ``streams``, and get dE/dY at them from ``score_fn(hyp, lengths) -> grad`` (the caller's closure over the
    network and the text, with ``create_graph=True``; noise-conditional members call ``score_fn(hyp, lengths,
    sigma)``).
    """

    def __init__(self, criteria: Sequence[Mapping[str, Any]]):
        super().__init__()
        if not criteria:
            raise ValueError("CombinedCriterion needs at least one criterion")
        self.members = nn.ModuleDict()
        self.weights: Dict[str, float] = {}
        for spec in criteria:
            name = spec["name"]
            if name == "combined":
                raise ValueError("a combined criterion's members are criteria, not another 'combined'")
            label = spec.get("label", name)
            base, i = label, 2
            while label in self.members:
                label, i = f"{base}_{i}", i + 1
            self.members[label] = build_criterion(name, **dict(spec.get("conf") or {}))
            self.weights[label] = float(spec.get("weight", 1.0))

    @property
    def needs_energies(self) -> bool:
        return any(isinstance(m, AbsEnergyCriterion) for m in self.members.values())

    @property
    def needs_score(self) -> bool:
        return any(isinstance(m, AbsScoreCriterion) for m in self.members.values())

    @property
    def noise_conditional_labels(self) -> List[str]:
        """Labels of the members that give the network their hypotheses' noise levels."""
        return [label for label, m in self.members.items() if getattr(m, "noise_conditional", False)]

    def forward(
        self,
        *,
        ref: torch.Tensor,
        lengths: torch.Tensor,
        e_pos: Optional[torch.Tensor] = None,
        e_neg: Optional[NegEnergies] = None,
        score_fn: Optional[Callable[..., torch.Tensor]] = None,
        streams: Optional[Mapping[str, Any]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, float]]:
        """``e_pos``/``e_neg`` are needed when there is an energy member, ``score_fn`` when there is a score one."""
        total = None
        stats: Dict[str, float] = {}
        for label, member in self.members.items():
            if isinstance(member, AbsEnergyCriterion):
                if e_pos is None or e_neg is None:
                    raise ValueError(f"criterion {label!r} needs e_pos and e_neg")
                loss, st = member(e_pos, e_neg)
            else:
                if score_fn is None:
                    raise ValueError(f"criterion {label!r} needs score_fn (dE/dY at the hypotheses it draws)")
                loss, st = member.loss_on_own_hypothesis(ref, lengths, score_fn, **dict(streams or {}))
            weighted = self.weights[label] * loss
            total = weighted if total is None else total + weighted
            stats.update({f"{label}_{k}": v for k, v in st.items()})
        stats["loss"] = _float(total)
        return total, stats


__all__ = [
    "AbsEnergyCriterion", "AbsScoreCriterion", "BinaryNCE", "RankingNCE", "DeltaScore", "DenoisingScoreMatching",
    "CombinedCriterion", "energy_criterion_choices", "score_criterion_choices", "CRITERIA", "build_criterion",
    "FRAME_DISTANCES", "frame_distance",
]
