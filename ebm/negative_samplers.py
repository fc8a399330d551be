"""Negatives (for NCE) and hypotheses (for score criteria), drawn for a batch of normalised mels.

Every sampler is an :class:`AbsNegativeSampler`, registered by name in :data:`sampler_choices` (ESPnet's
``ClassChoices``, type-checked against the base class), with one calling convention::

    neg_feats, neg_lengths = sampler(feats, feats_lengths, **streams)

``feats`` (B, T, D) normalised log-mels (zero-padded), ``feats_lengths`` (B,). ``streams`` carries whatever else the
batch has; each sampler takes the keywords it needs and ignores the rest:

* ``tf_feats``, ``tf_feats_lengths``: Tacotron 2 teacher-forced predictions (the reference's lengths);
* ``fr_feats``, ``fr_feats_lengths``: Tacotron 2 free-running predictions (their own lengths);
* ``energy_fn``: ``energy_fn(feats, lengths[, index=...]) -> (energy, grad)`` for Langevin negatives, typically
  ``lambda y, l, index=None: net.energy_and_grad(text if index is None else text[index], ...)``.

Outputs are new tensors (inputs are never modified) with padded frames exactly zero, and no gradient history.
:class:`MixedSampler` is not a sampler but a container of samplers (as a combined criterion is of criteria): it
returns ``{type: NegativeSet(feats, lengths, index)}``, ``index`` being ``None`` when the negatives cover the whole
batch and the batch rows they belong to otherwise. Configs name samplers with :func:`build_sampler`, which also
translates the keys of :data:`RENAMED_KEYS` (with a warning naming the new key).

The prototype's lesson behind the menu: with only masked and teacher-forced negatives a classifier learns
"smooth/flat = fake" (a noisy reference then scores as real); noisy-reference, noisy-teacher-forced and
free-running negatives close those shortcuts.
"""

import math
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from espnet2.train.class_choices import ClassChoices
from torch import nn

from ebm.energy_network import valid_mask
from ebm.langevin import langevin_step, rename_keys

Range = Union[float, Sequence[float]]


def _zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return x * valid_mask(lengths.to(x.device), x.size(1)).unsqueeze(-1).to(x.dtype)


def _as_range(value: Range, name: str) -> Tuple[float, float]:
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if not 0 <= lo <= hi:
        raise ValueError(f"{name} must be a number or [low, high] with 0 <= low <= high, got {value!r}")
    return float(lo), float(hi)


def _fit_time(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Crop or zero-pad the time axis: streams are padded to their own batch maximum."""
    if x.size(1) >= frames:
        return x[:, :frames]
    return torch.cat([x, x.new_zeros(x.size(0), frames - x.size(1), *x.shape[2:])], dim=1)


def _stream(streams: Mapping[str, Any], key: str, who: str) -> torch.Tensor:
    value = streams.get(key)
    if value is None:
        raise ValueError(f"{who} needs the '{key}' stream (got streams: {sorted(k for k in streams)}); in a recipe, "
                         "add its stage 4 decode to --ebm_streams (tf_feats: teacher_forced, fr_feats: free_running)")
    return value


def _same_length_stream(feats, feats_lengths, streams, prefix: str, who: str) -> torch.Tensor:
    """A stream that must match the reference frame for frame (teacher-forced output)."""
    x = _stream(streams, f"{prefix}_feats", who)
    lengths = _stream(streams, f"{prefix}_feats_lengths", who)
    if x.shape[0] != feats.shape[0] or x.shape[-1] != feats.shape[-1]:
        raise ValueError(f"{who}: {prefix}_feats has shape {tuple(x.shape)}, reference {tuple(feats.shape)}")
    if not torch.equal(lengths.to("cpu", torch.long), feats_lengths.to("cpu", torch.long)):
        bad = (lengths.cpu() != feats_lengths.cpu()).nonzero().flatten().tolist()
        raise ValueError(
            f"{who}: {prefix}_feats_lengths differ from the reference lengths at batch rows {bad} "
            f"({lengths.cpu()[bad].tolist()} vs {feats_lengths.cpu()[bad].tolist()}); teacher-forced predictions "
            "must have the reference's length (decode with --use_teacher_forcing true on the same features)"
        )
    return _zero_padding(_fit_time(x.to(feats.device, feats.dtype), feats.size(1)), feats_lengths)


def _log_uniform(batch: int, lo: float, hi: float, device) -> torch.Tensor:
    if lo <= 0:
        raise ValueError(f"log-uniform range needs a positive lower bound, got {lo}")
    return torch.exp(torch.empty(batch, device=device).uniform_(math.log(lo), math.log(hi)))


class AbsNegativeSampler(nn.Module, ABC):
    """One kind of negative (or score-criterion hypothesis) for a batch of references.

    Samplers are modules (without parameters) so that configs build them and containers hold them. ``forward``
    takes the streams it needs by keyword and ignores the rest, and returns ``(feats (B, T', D), lengths (B,))``
    for the same B rows, padded frames zero and detached.
    """

    @abstractmethod
    def forward(self, feats: torch.Tensor, feats_lengths: torch.Tensor,
                **streams) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _exact_span_mask(n: int, k: int, span: Tuple[int, int], device) -> torch.Tensor:
    """(n,) bool with exactly k True, made of random spans (lengths in ``span``) so the damage is contiguous.

    Spans are added at random positions until k positions are covered; the last one is cut short so the count
    is exact, which keeps the distortion ratio (the knob the paper ablates) what was asked for.
    """
    mask = torch.zeros(n, dtype=torch.bool, device=device)
    k = max(0, min(k, n))
    count, tries = 0, 0
    while count < k and tries < 20 * k + 100:
        tries += 1
        w = int(torch.randint(span[0], span[1] + 1, (1,)))
        w = max(1, min(w, n))
        s = int(torch.randint(0, n - w + 1, (1,)))
        new = (~mask[s:s + w]).nonzero().flatten()[: k - count] + s
        mask[new] = True
        count += new.numel()
    if count < k:  # practically unreachable; keep the ratio exact anyway
        free = (~mask).nonzero().flatten()
        mask[free[torch.randperm(free.numel(), device=device)[: k - count]]] = True
    return mask


class RandomMasking(AbsNegativeSampler):
    """Masks time spans and/or mel bands of the reference so a fraction ``ratio`` of its valid cells is hit.

    The paper's best single negative, at about 25-30% distortion. ``ratio`` is a number or a [low, high] range
    drawn per utterance. ``mode``: ``time`` (whole frames), ``freq`` (whole bands over the utterance) or ``both``
    (frames and bands whose union covers ``ratio`` of the cells). ``span``/``freq_span``: [min, max] span lengths
    in frames/bins. ``fill``: ``zero`` (the mean, in normalised space) or ``noise`` (N(0, noise_std^2)).
    """

    def __init__(self, ratio: Range = (0.25, 0.30), mode: str = "time", span: Sequence[int] = (5, 20),
                 freq_span: Sequence[int] = (2, 8), fill: str = "zero", noise_std: float = 1.0):
        super().__init__()
        if mode not in ("time", "freq", "both"):
            raise ValueError(f"mode must be time, freq or both, got {mode!r}")
        if fill not in ("zero", "noise"):
            raise ValueError(f"fill must be zero or noise, got {fill!r}")
        self.ratio = _as_range(ratio, "ratio")
        if self.ratio[1] > 1:
            raise ValueError(f"ratio must be <= 1, got {ratio!r}")
        self.mode, self.fill, self.noise_std = mode, fill, float(noise_std)
        self.span = (int(span[0]), int(span[1]))
        self.freq_span = (int(freq_span[0]), int(freq_span[1]))

    def cell_mask(self, feats: torch.Tensor, feats_lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) bool of the cells to overwrite (never padded frames)."""
        B, T, D = feats.shape
        out = torch.zeros(B, T, D, dtype=torch.bool, device=feats.device)
        for b in range(B):
            L = int(feats_lengths[b])
            if L == 0:
                continue
            r = float(torch.empty(1).uniform_(*self.ratio)) if self.ratio[0] < self.ratio[1] else self.ratio[0]
            if self.mode == "time":
                out[b, :L] = _exact_span_mask(L, round(r * L), self.span, feats.device).unsqueeze(-1)
            elif self.mode == "freq":
                out[b, :L] = _exact_span_mask(D, round(r * D), self.freq_span, feats.device).unsqueeze(0)
            else:
                # union of time fraction a and band fraction f covers 1 - (1 - a)(1 - f) = r of the cells:
                # take f = 1 - sqrt(1 - r) rounded to whole bands, then solve for the frames.
                nf = round((1 - math.sqrt(1 - r)) * D)
                nf = min(nf, D - 1) if r < 1 else D
                nt = round(L * (1 - (1 - r) / (1 - nf / D))) if nf < D else 0
                fm = _exact_span_mask(D, nf, self.freq_span, feats.device)
                tm = _exact_span_mask(L, max(0, min(nt, L)), self.span, feats.device)
                out[b, :L] = tm.unsqueeze(-1) | fm.unsqueeze(0)
        return out

    def forward(self, feats, feats_lengths, **streams):
        mask = self.cell_mask(feats, feats_lengths)
        if self.fill == "zero":
            fill = torch.zeros_like(feats)
        else:
            fill = self.noise_std * torch.randn_like(feats)
        out = torch.where(mask, fill, feats.detach())
        return _zero_padding(out, feats_lengths), feats_lengths


class SpecAugmentDistortion(AbsNegativeSampler):
    """SpecAugment-style distortion of the reference with ESPnet's own layers (TimeWarp, MaskAlongAxis).

    Applied per utterance on its valid frames: ESPnet's batch call draws mask positions over the padded length
    (so short utterances in a long batch would often escape the masks) and warps all equal-length rows alike.
    """

    def __init__(self, apply_time_warp: bool = True, time_warp_window: int = 5, time_warp_mode: str = "bicubic",
                 apply_freq_mask: bool = True, freq_mask_width_range: Sequence[int] = (5, 20),
                 num_freq_mask: int = 2, apply_time_mask: bool = True,
                 time_mask_width_range: Sequence[int] = (10, 40), num_time_mask: int = 2,
                 replace_with_zero: bool = True):
        super().__init__()
        from espnet2.layers.mask_along_axis import MaskAlongAxis
        from espnet2.layers.time_warp import TimeWarp

        self.time_warp = TimeWarp(window=time_warp_window, mode=time_warp_mode) if apply_time_warp else None
        self.freq_mask = (MaskAlongAxis(dim="freq", mask_width_range=tuple(freq_mask_width_range),
                                        num_mask=num_freq_mask, replace_with_zero=replace_with_zero)
                          if apply_freq_mask else None)
        self.time_mask = (MaskAlongAxis(dim="time", mask_width_range=tuple(time_mask_width_range),
                                        num_mask=num_time_mask, replace_with_zero=replace_with_zero)
                          if apply_time_mask else None)

    def forward(self, feats, feats_lengths, **streams):
        out = torch.zeros_like(feats)
        for b in range(feats.size(0)):
            L = int(feats_lengths[b])
            if L == 0:
                continue
            x = feats[b:b + 1, :L].detach().clone()  # ESPnet's layers work in place
            lens = feats_lengths[b:b + 1]
            for layer in (self.time_warp, self.freq_mask, self.time_mask):
                if layer is not None:
                    x, _ = layer(x, lens)
            out[b, :L] = x[0]
        return out, feats_lengths


class GaussianNoise(AbsNegativeSampler):
    """A stream plus sigma * N(0, I), sigma log-uniform in [sigma_min, sigma_max] per utterance.

    ``source``: ``reference`` or ``teacher_forced`` (the ``tf_feats`` stream). Noisy references are the negatives
    that stop an NCE model from equating "rough" with "real"; the last draw's sigmas stay in ``last_sigma``.
    """

    def __init__(self, sigma_min: float = 0.1, sigma_max: float = 1.0, source: str = "reference"):
        super().__init__()
        if source not in ("reference", "teacher_forced"):
            raise ValueError(f"source must be reference or teacher_forced, got {source!r}")
        if not 0 < sigma_min <= sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.source = float(sigma_min), float(sigma_max), source
        self.last_sigma: Optional[torch.Tensor] = None

    def forward(self, feats, feats_lengths, **streams):
        base = feats.detach() if self.source == "reference" else _same_length_stream(
            feats, feats_lengths, streams, "tf", "GaussianNoise(source=teacher_forced)")
        sigma = _log_uniform(feats.size(0), self.sigma_min, self.sigma_max, feats.device).to(feats.dtype)
        self.last_sigma = sigma
        out = base + sigma.view(-1, 1, 1) * torch.randn_like(base)
        return _zero_padding(out, feats_lengths), feats_lengths


def _gaussian_blur_time(x: torch.Tensor, sigma: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Blur each utterance along time with its own Gaussian (std ``sigma[b]`` frames), edges replicated."""
    out = x.clone()
    for b in range(x.size(0)):
        s, L = float(sigma[b]), int(lengths[b])
        if s <= 0 or L < 2:
            continue
        radius = max(1, min(int(math.ceil(3 * s)), L - 1))
        k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (k / s) ** 2)
        k = (k / k.sum()).view(1, 1, -1).expand(x.size(-1), 1, -1)
        seq = x[b, :L].t().unsqueeze(0)  # (1, D, L)
        seq = torch.nn.functional.pad(seq, (radius, radius), mode="replicate")
        out[b, :L] = torch.nn.functional.conv1d(seq, k, groups=x.size(-1))[0].t()
    return out


class OversmoothedReference(AbsNegativeSampler):
    """The reference made to look like a regression model's output: blurred in time, its variance shrunk.

    ``Y- = m + shrink * (blur(Y+) - m)``, with ``m`` the utterance's mean per mel bin, ``shrink`` uniform in
    ``shrink`` and the blur's std uniform in ``blur`` frames (0: none), per utterance. A model trained with the
    delta criterion on these learns to put back the detail and variance that an L1/L2-trained decoder such as
    Tacotron 2 averages away, a correction that is defined (unlike the regression of free-running outputs onto
    their DTW-warped references, which only learns a smoother mean).
    """

    def __init__(self, shrink: Range = (0.6, 1.0), blur: Range = (0.0, 2.0)):
        super().__init__()
        self.shrink = _as_range(shrink, "shrink")
        self.blur = _as_range(blur, "blur")

    def forward(self, feats, feats_lengths, **streams):
        B = feats.size(0)
        valid = valid_mask(feats_lengths.to(feats.device), feats.size(1)).unsqueeze(-1).to(feats.dtype)
        ref = feats.detach()
        mean = (ref * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
        shrink = torch.empty(B, device=feats.device, dtype=feats.dtype).uniform_(*self.shrink).view(-1, 1, 1)
        sigma = torch.empty(B).uniform_(*self.blur)
        blurred = _gaussian_blur_time(ref, sigma, feats_lengths)
        return _zero_padding(mean + shrink * (blurred - mean), feats_lengths), feats_lengths


class TeacherForced(AbsNegativeSampler):
    """The Tacotron 2 teacher-forced prediction (``tf_feats``): a strong, well-aligned negative."""

    def forward(self, feats, feats_lengths, **streams):
        return _same_length_stream(feats, feats_lengths, streams, "tf", "TeacherForced").detach(), feats_lengths


class FreeRunning(AbsNegativeSampler):
    """The Tacotron 2 free-running prediction (``fr_feats``), with its own lengths."""

    def forward(self, feats, feats_lengths, **streams):
        x = _stream(streams, "fr_feats", "FreeRunning")
        lengths = _stream(streams, "fr_feats_lengths", "FreeRunning")
        if x.shape[0] != feats.shape[0] or x.shape[-1] != feats.shape[-1]:
            raise ValueError(f"FreeRunning: fr_feats has shape {tuple(x.shape)}, reference {tuple(feats.shape)}")
        lengths = lengths.to(feats_lengths.device)
        x = _fit_time(x.detach().to(feats.device, feats.dtype), int(lengths.max()) if lengths.numel() else 0)
        return _zero_padding(x, lengths), lengths


class LangevinSamples(AbsNegativeSampler):
    """Short-run Langevin negatives (contrastive-divergence style): the model's own low-energy mistakes.

    From ``init`` (``reference`` or ``teacher_forced``) plus ``init_sigma`` noise, ``steps`` updates of decoding's
    rule (:func:`ebm.langevin.langevin_step`): ``Y <- Y - step_size * dE/dY + sqrt(2 * step_size) * sigma * Z``
    (1 is the rule, 0 plain gradient descent); ``grad_clamp`` (optional) clamps the gradient element-wise to
    ``[-grad_clamp, grad_clamp]`` (Du & Mordatch 2019). ``energy_fn(feats, lengths[, index=])`` -> (energy,
    grad) comes from the constructor or the call (the call wins); ``index`` is passed when the rows are a subset of
    the batch (MixedSampler's ``sample`` mode). The result is detached: no gradient flows through the chain.
    """

    def __init__(self, energy_fn: Optional[Callable] = None, steps: int = 10, step_size: float = 0.01,
                 sigma: float = 1.0, init: str = "reference", init_sigma: float = 0.3,
                 grad_clamp: Optional[float] = None):
        super().__init__()
        if init not in ("reference", "teacher_forced"):
            raise ValueError(f"init must be reference or teacher_forced, got {init!r}")
        # kept out of nn.Module's registry: a network passed here must not become a second copy of the model
        object.__setattr__(self, "energy_fn", energy_fn)
        self.steps, self.step_size, self.sigma = int(steps), float(step_size), float(sigma)
        self.init, self.init_sigma, self.grad_clamp = init, float(init_sigma), grad_clamp

    def forward(self, feats, feats_lengths, energy_fn: Optional[Callable] = None, index=None, **streams):
        fn = energy_fn or self.energy_fn
        if fn is None:
            raise ValueError("LangevinSamples needs energy_fn (constructor or call keyword)")
        if self.init == "reference":
            y = feats.detach().clone()
        else:
            y = _same_length_stream(feats, feats_lengths, streams, "tf", "LangevinSamples(init=teacher_forced)")
        y = _zero_padding(y + self.init_sigma * torch.randn_like(y), feats_lengths)
        mask = valid_mask(feats_lengths.to(y.device), y.size(1)).unsqueeze(-1)
        for _ in range(self.steps):
            _, grad = fn(y, feats_lengths) if index is None else fn(y, feats_lengths, index=index)
            y = langevin_step(y, grad.detach(), mask, self.step_size, self.sigma, grad_clamp=self.grad_clamp).detach()
        return y, feats_lengths


class NegativeSet(NamedTuple):
    """One negative type of a batch; ``index`` None = one negative per batch row, else the rows it covers."""

    feats: torch.Tensor
    lengths: torch.Tensor
    index: Optional[torch.Tensor] = None


class MixedSampler(nn.Module):
    """Several samplers at once, per-type results so NCE statistics can be logged per negative type.

    ``samplers``: list of ``{name, conf, weight, label}`` (label defaults to name; repeats get ``_2``...).
    ``mode: all``: every sampler on every utterance (K = number of samplers negatives per positive).
    ``mode: sample``: each utterance gets one negative whose type is drawn with probability proportional to
    ``weight``; types nobody drew are left out of the result. Tensor streams with the batch's first dimension are
    subset to the rows of each type; ``index`` is passed on (LangevinSamples gives it to ``energy_fn``).
    Returns ``{label: NegativeSet(feats, lengths, index)}``.
    """

    def __init__(self, samplers: Sequence[Mapping[str, Any]], mode: str = "all"):
        super().__init__()
        if mode not in ("all", "sample"):
            raise ValueError(f"mode must be all or sample, got {mode!r}")
        if not samplers:
            raise ValueError("MixedSampler needs at least one sampler")
        self.mode = mode
        self.members = nn.ModuleDict()
        weights = []
        for spec in samplers:
            label = spec.get("label", spec["name"])
            base, i = label, 2
            while label in self.members:
                label, i = f"{base}_{i}", i + 1
            self.members[label] = build_negative_sampler(spec["name"], **dict(spec.get("conf") or {}))
            weights.append(float(spec.get("weight", 1.0)))
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        self.register_buffer("weights", torch.tensor(weights), persistent=False)

    def forward(self, feats, feats_lengths, **streams) -> Dict[str, NegativeSet]:
        if self.mode == "all":
            return {label: NegativeSet(*s(feats, feats_lengths, **streams), None)
                    for label, s in self.members.items()}
        B = feats.size(0)
        choice = torch.multinomial(self.weights.cpu(), B, replacement=True)
        out = {}
        for k, (label, s) in enumerate(self.members.items()):
            idx = (choice == k).nonzero().flatten()
            if idx.numel() == 0:
                continue
            sub = {key: (v[idx.to(v.device)] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.size(0) == B
                         else v) for key, v in streams.items()}
            didx = idx.to(feats.device)
            neg, lens = s(feats[didx], feats_lengths[idx.to(feats_lengths.device)], index=didx, **sub)
            out[label] = NegativeSet(neg, lens, didx)
        return out


sampler_choices = ClassChoices(
    "negative_sampler",
    classes=dict(
        random_masking=RandomMasking,
        specaug=SpecAugmentDistortion,
        gaussian_noise=GaussianNoise,
        oversmoothed=OversmoothedReference,
        teacher_forced=TeacherForced,
        free_running=FreeRunning,
        langevin=LangevinSamples,
    ),
    type_check=AbsNegativeSampler,
    default="random_masking",
)

#: Every name :func:`build_sampler` takes: the registered samplers and the ``mixed`` container.
SAMPLERS = {**sampler_choices.classes, "mixed": MixedSampler}

#: Config keys renamed so that each name has one meaning: sampler -> {old key: new key}. ``grad_clip`` is the
#: trainer's norm clip in ESPnet's YAML; ``noise_scale`` is the whole noise std in :mod:`ebm.langevin`.
RENAMED_KEYS = {"langevin": {"grad_clip": "grad_clamp", "noise_scale": "sigma"}}


def translate_renamed_keys(name: str, conf: Mapping[str, Any]) -> Dict[str, Any]:
    """``conf`` with the old keys of sampler ``name`` renamed, each logged as a warning that names the new key."""
    return rename_keys(conf, RENAMED_KEYS.get(name, {}), f"negative sampler {name!r}")


def build_negative_sampler(name: str, **conf) -> AbsNegativeSampler:
    """The registered sampler ``name`` (see :data:`sampler_choices`) with its keyword config."""
    if not isinstance(name, str) or name not in sampler_choices.classes:
        raise ValueError(f"unknown sampler {name!r}; choose from {sorted(sampler_choices.classes)}")
    return sampler_choices.get_class(name)(**translate_renamed_keys(name, conf))


def build_sampler(name: str, **conf) -> Union[AbsNegativeSampler, MixedSampler]:
    """``name`` from :data:`SAMPLERS` with its keyword config: a sampler, or ``mixed`` with ``samplers=[...]``."""
    if name == "mixed":
        return MixedSampler(**conf)
    if not isinstance(name, str) or name not in sampler_choices.classes:
        raise ValueError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    return build_negative_sampler(name, **conf)


__all__ = [
    "AbsNegativeSampler", "RandomMasking", "SpecAugmentDistortion", "GaussianNoise", "OversmoothedReference",
    "TeacherForced", "FreeRunning", "LangevinSamples", "MixedSampler", "NegativeSet", "sampler_choices", "SAMPLERS",
    "RENAMED_KEYS", "translate_renamed_keys", "build_negative_sampler", "build_sampler",
]
