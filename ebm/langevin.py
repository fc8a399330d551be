"""Langevin MCMC inference for the EBM (arXiv 2310.12765): refine an initial mel hypothesis by noisy descent on E.

    Y <- Y - lambda * grad_Y E(x, Y) + sqrt(2 * lambda) * sigma * temperature * Z,   Z ~ N(0, I)

:func:`langevin_step` is that update, the one place it is written: decoding (:class:`LangevinSampler`), the
``langevin`` negative sampler, the refinement gain that validation selects checkpoints by, synthesis and the
benchmark all take their steps through it, so the step a checkpoint is selected on is the step decoding takes.

The paper's rule is sigma = temperature = 1 (300 steps from a Tacotron 2 hypothesis). The extra knobs exist
because an energy trained with NCE or score matching is only meaningful near the data: a chain that walks off
(non-finite values, mel outside the normalised range, energy blowing up) is stopped and keeps its last sane
state rather than poisoning the output, while the rest of the batch goes on.

Design choices, and why:

* A state is *sane* when the mel, its energy and its gradient are all finite, the mel is inside
  ``[-max_abs, max_abs]`` and the energy has not diverged. A finite mel whose gradient is NaN is rejected too:
  the next step from it would be NaN, so it cannot be trusted as a place to stop.
* Only active utterances are evaluated (subset, trimmed to their longest length): the energy network is
  padding- and batch-invariant, so this changes no result and saves the cost of frozen rows.
* Padded frames are masked with ``torch.where`` (not multiplication), so a NaN update cannot leak into them
  (NaN * 0 is NaN); they stay exactly zero.
* ``normalize_grad`` divides by the gradient's RMS over each utterance's valid cells (never over the batch), so a
  step does not depend on which other utterances share its batch.
* ``update_clip`` bounds the whole per-frame change (drift + noise): that is what keeps a chain from jumping,
  whereas ``grad_frame_clip`` (per-frame L2 norm) and ``grad_clamp`` (element-wise) only tame the drift.
* *Annealed* Langevin (``noise_level_max`` > ``noise_level_min``, for a noise-conditional energy, Song & Ermon
  2019): the steps are spread evenly over ``noise_levels`` geometric levels from the coarsest to the finest, the
  network reads each step's level, and the step size scales with the level squared,
  lambda_n = step_size * (level_n / noise_level_min)^2, so that the chain mixes at coarse levels and settles at
  fine ones. Starting from Tacotron 2's output at a level that covers its error is what Grad-TTS and shallow
  diffusion refiners do with their prior mel. ``denoise_final`` ends with one noiseless step of size
  noise_level_min^2, which for a score trained by DSM is Tweedie's estimate of the clean mel.
* ``drift_min_bin`` leaves the mel bins below it as the hypothesis has them. A correction learnt by regression
  is an average over plausible references; in the low bins, where the harmonics are resolved, that average
  flattens them and frames lose their voicing, while above them it moves the envelope that MCD measures.
"""

import contextlib
import logging
import math
from typing import List, NamedTuple, Optional

import torch
from torch import nn

from ebm.energy_network import noise_kwargs, valid_mask

_EPS = 1e-12


class LangevinResult(NamedTuple):
    """Output of :meth:`LangevinSampler.run`.

    feats: (B,T,D) final mel; padded frames exactly zero.
    lengths: (B,) long, the valid lengths (those of the initial hypothesis).
    energies: (B, n_records) energy at each recorded step; column 0 is the initial hypothesis; after a stop
        the last sane energy is repeated.
    stopped: (B,) bool, stopped early.
    stop_step: (B,) long, step at which the bad state appeared (``steps`` if never stopped).
    reasons: per utterance None, "non_finite", "out_of_range" or "diverged_energy".
    record_steps: (n_records,) long, the step index of each energies column.
    """

    feats: torch.Tensor
    lengths: torch.Tensor
    energies: torch.Tensor
    stopped: torch.Tensor
    stop_step: torch.Tensor
    reasons: List[Optional[str]]
    record_steps: torch.Tensor


@contextlib.contextmanager
def _eval_mode(net):
    """Eval mode for the chain (no dropout: the energy must be a fixed function), then each module's mode back."""
    if not isinstance(net, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _clip_frame_norm(x: torch.Tensor, max_norm: float) -> torch.Tensor:
    norm = x.norm(dim=-1, keepdim=True)
    return x * (max_norm / norm.clamp_min(_EPS)).clamp(max=1.0)


def langevin_step(y: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor, step_size: float, sigma: float = 1.0,
                  temperature: float = 1.0, *, normalize_grad: bool = False, grad_clamp: Optional[float] = None,
                  grad_frame_clip: Optional[float] = None, drift_min_bin: int = 0,
                  update_clip: Optional[float] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One Langevin update of ``y`` (B,T,D) given ``grad`` = dE/dY: the rule of the module docstring.

    The drift is shaped in this order: bins below ``drift_min_bin`` zeroed, clamped element-wise to
    ``+-grad_clamp``, each frame's L2 norm clipped to ``grad_frame_clip``, divided by its RMS over the utterance's
    valid cells (``normalize_grad``). Noise of std ``sqrt(2 * step_size) * sigma * temperature`` is drawn (from
    ``generator``, else the global RNG) only when that std is positive, over the whole padded shape; each frame's
    total update may be clipped to ``update_clip``. Cells outside ``mask`` (B,T,1) bool (padding, stopped chains)
    are left exactly as they are.
    """
    zero = torch.zeros((), dtype=y.dtype, device=y.device)
    g = torch.where(mask, grad, zero)
    if drift_min_bin > 0:
        g = torch.where(torch.arange(y.size(-1), device=y.device) >= drift_min_bin, g, zero)
    if grad_clamp is not None:
        g = g.clamp(-grad_clamp, grad_clamp)
    if grad_frame_clip is not None:
        g = _clip_frame_norm(g, grad_frame_clip)
    if normalize_grad:
        n_cells = (mask.flatten(1).sum(1) * y.size(-1)).clamp(min=1).to(y.dtype)
        rms = (g.square().flatten(1).sum(1) / n_cells).sqrt()
        g = g / rms.clamp_min(_EPS)[:, None, None]
    upd = -step_size * g
    noise_std = (2.0 * step_size) ** 0.5 * sigma * temperature
    if noise_std > 0:
        upd = upd + noise_std * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    if update_clip is not None:
        upd = _clip_frame_norm(upd, update_clip)
    return y + torch.where(mask, upd, zero)


def rename_keys(conf: dict, renamed: dict, what: str) -> dict:
    """``conf`` with each old key of ``renamed`` ({old: new}) renamed, logged as a warning that names the new key;
    both spellings at once is an error. Old configs (and the settings.yaml of old decodes) keep working."""
    conf = dict(conf)
    for old, new in renamed.items():
        if old not in conf:
            continue
        if new in conf:
            raise ValueError(f"{what}: both {old!r} and its new name {new!r} are set; keep only {new!r}")
        logging.warning(f"{what}: config key {old!r} is now {new!r} (same meaning); rename it in the config")
        conf[new] = conf.pop(old)
    return conf


class LangevinSampler:
    """Batched Langevin chains over utterances of different lengths. See the module docstring for the rule.

    Args:
        steps: number of Langevin steps (the paper's best: 300).
        step_size: lambda.
        sigma: noise scale; 1 is the paper's rule, 0 is plain gradient descent on the energy.
        temperature: a second noise multiplier, independent of lambda (sampling at lower temperature).
        normalize_grad: divide the gradient by its RMS over the utterance's valid cells, so each drift step has
            RMS lambda in the normalised feature space whatever the energy's scale.
        grad_frame_clip: clip each frame's gradient L2 norm to this (before normalisation); ``grad_clip``, its
            old name (the trainer's global norm clip in ESPnet's YAML), is translated with a warning.
        update_clip: clip each frame's total update (drift + noise) L2 norm to this.
        drift_min_bin: no drift on mel bins below this one (0: every bin moves); the noise still reaches them.
        max_abs: a valid mel cell outside [-max_abs, max_abs] after a step counts as diverged ("out_of_range").
        divergence_factor: an energy above E0 + factor * |E0| + 1 (E0 the initial energy) counts as diverged
            ("diverged_energy").
        seed: seeds a private generator for the noise (reproducible, and the global RNG is left alone);
            None uses the global RNG.
        noise_level_max, noise_level_min: the noise levels a noise-conditional energy network reads, coarsest
            and finest (annealed Langevin, module docstring); None for a network without a noise input.
        noise_levels: number of geometric levels between them; the steps are spread evenly over the levels.
        denoise_final: end with one noiseless step of size noise_level_min^2 (Tweedie's denoiser).
    """

    def __init__(
        self,
        steps: int = 300,
        step_size: float = 0.01,
        sigma: float = 1.0,
        temperature: float = 1.0,
        normalize_grad: bool = False,
        grad_frame_clip: Optional[float] = None,
        update_clip: Optional[float] = None,
        drift_min_bin: int = 0,
        max_abs: Optional[float] = None,
        divergence_factor: Optional[float] = None,
        seed: Optional[int] = None,
        noise_level_max: Optional[float] = None,
        noise_level_min: Optional[float] = None,
        noise_levels: int = 1,
        denoise_final: bool = False,
        **old_keys,
    ):
        unknown = sorted(set(old_keys) - set(RENAMED_KEYS))
        if unknown:
            raise TypeError(f"LangevinSampler got unexpected option(s) {unknown}")
        if old_keys:  # grad_clip, the old name of grad_frame_clip
            given = {} if grad_frame_clip is None else {"grad_frame_clip": grad_frame_clip}
            grad_frame_clip = rename_keys({**old_keys, **given}, RENAMED_KEYS, "Langevin sampler")["grad_frame_clip"]
        if int(steps) < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        if sigma < 0 or temperature < 0:
            raise ValueError(f"sigma and temperature must be >= 0, got {sigma}, {temperature}")
        for name, v in (("grad_frame_clip", grad_frame_clip), ("update_clip", update_clip), ("max_abs", max_abs)):
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0 or None, got {v}")
        if int(drift_min_bin) < 0:
            raise ValueError(f"drift_min_bin must be >= 0, got {drift_min_bin}")
        if divergence_factor is not None and divergence_factor < 0:
            raise ValueError(f"divergence_factor must be >= 0 or None, got {divergence_factor}")
        if (noise_level_max is None) != (noise_level_min is None):
            raise ValueError("set both noise_level_max and noise_level_min (a noise-conditional network), or neither")
        if noise_level_max is not None:
            if not 0 < noise_level_min <= noise_level_max:
                raise ValueError(f"need 0 < noise_level_min <= noise_level_max, got {noise_level_min}, "
                                 f"{noise_level_max}")
            if divergence_factor is not None:
                raise ValueError("divergence_factor compares energies at one noise level, and an annealed chain "
                                 "changes level: set divergence_factor: null (max_abs still stops a chain that "
                                 "walks off)")
        elif denoise_final:
            raise ValueError("denoise_final needs a noise-conditional network and its noise_level_min")
        if int(noise_levels) < 1:
            raise ValueError(f"noise_levels must be >= 1, got {noise_levels}")
        self.steps = int(steps)
        self.step_size = float(step_size)
        self.sigma = float(sigma)
        self.temperature = float(temperature)
        self.normalize_grad = bool(normalize_grad)
        self.grad_frame_clip = grad_frame_clip
        self.update_clip = update_clip
        self.drift_min_bin = int(drift_min_bin)
        self.max_abs = max_abs
        self.divergence_factor = divergence_factor
        self.seed = seed
        self.noise_level_max = None if noise_level_max is None else float(noise_level_max)
        self.noise_level_min = None if noise_level_min is None else float(noise_level_min)
        self.noise_levels = int(noise_levels)
        self.denoise_final = bool(denoise_final)

    @property
    def noise_scale(self) -> float:
        return (2.0 * self.step_size) ** 0.5 * self.sigma * self.temperature

    def __repr__(self) -> str:
        return f"LangevinSampler({', '.join(f'{k}={getattr(self, k)!r}' for k in CONFIG_KEYS)})"

    def record_steps(self, record_every: int = 1) -> List[int]:
        """Steps whose energies are recorded: 0, r, 2r, ... and always the last step."""
        if record_every < 1:
            raise ValueError(f"record_every must be >= 1, got {record_every}")
        out = list(range(0, self.steps + 1, record_every))
        if out[-1] != self.steps:
            out.append(self.steps)
        return out

    @property
    def annealed(self) -> bool:
        return self.noise_level_max is not None

    def level(self, n: int) -> Optional[float]:
        """The noise level the network reads for step ``n`` (1-based; 0 and ``steps + 1`` clamp to the first and
        last), or None without annealing."""
        if not self.annealed:
            return None
        if self.noise_levels == 1 or self.noise_level_max == self.noise_level_min:
            return self.noise_level_max
        k = min(max(n - 1, 0) * self.noise_levels // max(self.steps, 1), self.noise_levels - 1)
        ratio = math.log(self.noise_level_min / self.noise_level_max) / (self.noise_levels - 1)
        return self.noise_level_max * math.exp(k * ratio)

    def step_size_at(self, n: int) -> float:
        """lambda of step ``n``: ``step_size``, scaled by (level / noise_level_min)^2 when annealed."""
        if not self.annealed:
            return self.step_size
        return self.step_size * (self.level(n) / self.noise_level_min) ** 2

    def step(self, y: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor,
             generator: Optional[torch.Generator] = None, n: int = 1) -> torch.Tensor:
        """Step ``n`` of this sampler's rule (:func:`langevin_step` with its options)."""
        return langevin_step(y, grad, mask, self.step_size_at(n), self.sigma, self.temperature,
                             normalize_grad=self.normalize_grad, grad_frame_clip=self.grad_frame_clip,
                             drift_min_bin=self.drift_min_bin, update_clip=self.update_clip, generator=generator)

    def check_network(self, energy_network) -> None:
        """ValueError unless this sampler anneals exactly when ``energy_network`` reads a noise level."""
        conditional = bool(getattr(energy_network, "noise_conditional", False))
        if conditional != self.annealed:
            raise ValueError("a noise-conditional energy network needs noise_level_max and noise_level_min in the "
                             "decode config (annealed Langevin)" if conditional else "noise_level_max/"
                             "noise_level_min are for a noise-conditional energy network; this one has no noise "
                             "input: drop them from the decode config")

    def run(self, energy_network, text: torch.Tensor, text_lengths: torch.Tensor, init: torch.Tensor,
            init_lengths: torch.Tensor, record_every: int = 1) -> LangevinResult:
        """Run the chains from ``init`` (B,T,D), each for ``steps`` steps unless it stops early."""
        self.check_network(energy_network)
        rec_steps = self.record_steps(record_every)
        B, T, _ = init.shape
        device, dtype = init.device, init.dtype
        lengths = init_lengths.to(device=device, dtype=torch.long)
        text_lengths = text_lengths.to(text.device)
        valid = valid_mask(lengths, T).unsqueeze(-1)  # (B,T,1) bool
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=device)
            gen.manual_seed(int(self.seed))

        # Evaluation on the active subset; the subset's slices are rebuilt only when the active set changes.
        cache = {}

        def evaluate(feats, active, n):
            noise = noise_kwargs(self.level(n))
            if bool(active.all()):
                return energy_network.energy_and_grad(text, text_lengths, feats, lengths, **noise)
            if "idx" not in cache:
                idx = active.nonzero().squeeze(1)
                tidx = idx.to(text.device)
                tl = text_lengths[tidx]
                cache.update(idx=idx, tmax=int(lengths[idx].max()), text=text[tidx][:, :int(tl.max())], tl=tl)
            idx, tmax = cache["idx"], cache["tmax"]
            e_sub, g_sub = energy_network.energy_and_grad(cache["text"], cache["tl"], feats[idx, :tmax],
                                                          lengths[idx], **noise)
            e = torch.full((B,), float("nan"), device=device, dtype=e_sub.dtype)
            e[idx] = e_sub
            g = torch.zeros_like(feats)
            g[idx, :tmax] = g_sub.to(dtype)
            return e, g

        def row_finite(x):
            return torch.isfinite(x).flatten(1).all(1)

        stopped = torch.zeros(B, dtype=torch.bool, device=device)
        stop_step = torch.full((B,), self.steps, dtype=torch.long, device=device)
        reasons: List[Optional[str]] = [None] * B
        energies = None

        def stop(bad, step, reason):
            if bool(bad.any()):
                stopped.logical_or_(bad)
                stop_step[bad] = step
                for b in bad.nonzero().squeeze(1).tolist():
                    reasons[b] = reason
                cache.clear()

        with _eval_mode(energy_network), torch.no_grad():
            y = torch.where(valid, init.detach(), torch.zeros((), dtype=dtype, device=device))
            all_rows = torch.ones(B, dtype=torch.bool, device=device)
            energy, grad = evaluate(y, all_rows, 1)
            energy = energy.detach()
            grad = grad.detach().to(dtype)
            sane0 = torch.isfinite(energy) & row_finite(y) & row_finite(grad)
            stop(~sane0, 0, "non_finite")
            grad = torch.where(sane0[:, None, None], grad, torch.zeros((), dtype=dtype, device=device))
            energies = torch.empty(B, len(rec_steps), dtype=energy.dtype, device=device)
            energies[:, 0] = energy
            col = 1
            threshold = None
            if self.divergence_factor is not None:
                threshold = energy + self.divergence_factor * energy.abs() + 1.0

            for n in range(1, self.steps + 1):
                active = ~stopped
                if not bool(active.any()):
                    energies[:, col:] = energy[:, None]
                    break
                y_new = self.step(y, grad, valid & active[:, None, None], gen, n)

                e_new, g_new = evaluate(y_new, active, n + 1)  # the gradient the next step takes
                e_new, g_new = e_new.detach(), g_new.detach()
                finite = torch.isfinite(e_new) & row_finite(y_new) & row_finite(g_new)
                bad_nf = active & ~finite
                bad_range = torch.zeros_like(active)
                if self.max_abs is not None:
                    bad_range = active & finite & (y_new.abs() > self.max_abs).flatten(1).any(1)
                bad_div = torch.zeros_like(active)
                if threshold is not None:
                    bad_div = active & finite & ~bad_range & (e_new > threshold)
                accept = active & ~(bad_nf | bad_range | bad_div)

                a3 = accept[:, None, None]
                y = torch.where(a3, y_new, y)
                grad = torch.where(a3, g_new, grad)
                energy = torch.where(accept, e_new, energy)
                stop(bad_nf, n, "non_finite")
                stop(bad_range, n, "out_of_range")
                stop(bad_div, n, "diverged_energy")
                if col < len(rec_steps) and rec_steps[col] == n:
                    energies[:, col] = energy
                    col += 1

            if self.denoise_final:  # chains that ran to the end hold the gradient at the finest level
                done = valid & ~stopped[:, None, None]
                y_hat = langevin_step(y, grad, done, self.noise_level_min ** 2, sigma=0.0)
                ok = row_finite(y_hat)
                if self.max_abs is not None:
                    ok = ok & ~(y_hat.abs() > self.max_abs).flatten(1).any(1)
                y = torch.where(ok[:, None, None], y_hat, y)

        return LangevinResult(
            feats=y, lengths=lengths, energies=energies, stopped=stopped, stop_step=stop_step, reasons=reasons,
            record_steps=torch.tensor(rec_steps, dtype=torch.long),
        )


CONFIG_KEYS = ("steps", "step_size", "sigma", "temperature", "normalize_grad", "grad_frame_clip", "update_clip",
               "drift_min_bin", "max_abs", "divergence_factor", "seed", "noise_level_max", "noise_level_min",
               "noise_levels", "denoise_final")
#: Options renamed so that each name has one meaning (old: new); ``grad_clip`` is the trainer's global norm clip in
#: ESPnet's YAML. Old decode configs and old decodes' settings.yaml are translated with a warning.
RENAMED_KEYS = {"grad_clip": "grad_frame_clip"}


# The type of each numeric option (a decode config's batch_size and record_every included), and the options that
# may be null (off).
NUMERIC_KEYS = {"steps": int, "step_size": float, "sigma": float, "temperature": float, "grad_frame_clip": float,
                "update_clip": float, "drift_min_bin": int, "max_abs": float, "divergence_factor": float,
                "seed": int, "batch_size": int, "record_every": int, "noise_level_max": float,
                "noise_level_min": float, "noise_levels": int}
OPTIONAL_KEYS = ("grad_frame_clip", "update_clip", "max_abs", "divergence_factor", "seed", "noise_level_max",
                 "noise_level_min")
# A mel normalised by the training statistics (global_mvn) lies within a few units of 0; a refined mel beyond this
# bound is no longer speech, and vocoders fail on it (or make noise), so it is refused before it is written.
OUTPUT_BOUND = 50.0


def config_number(key, value):
    """``value`` as the int or float option ``key`` takes. PyYAML reads ``1.0e6`` or ``1e-3`` (no dot, or no sign
    in the exponent) as strings, so numeric strings are converted; anything else raises ValueError naming the key."""
    kind = NUMERIC_KEYS[key]
    if value is None and key in OPTIONAL_KEYS:
        return None
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number != number:
        raise ValueError(f"{key}: {value!r} is not a number")
    if kind is int:
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"{key}: {value!r} is not a whole number")
        return int(number)
    return float(number)


def langevin_from_config(conf: Optional[dict] = None) -> LangevinSampler:
    """Build a sampler from a YAML-style dict; unknown keys are an error so a typo cannot silently do nothing, and
    numeric options are converted (:func:`config_number`) so that ``1.0e6`` works as it reads."""
    conf = rename_keys(conf or {}, RENAMED_KEYS, "Langevin options")
    unknown = sorted(set(conf) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown Langevin option(s) {unknown}; valid: {list(CONFIG_KEYS)}")
    conf = {k: config_number(k, v) if k in NUMERIC_KEYS else v for k, v in conf.items()}
    for key in ("normalize_grad", "denoise_final"):
        if not isinstance(conf.get(key, False), bool):
            raise ValueError(f"{key}: {conf[key]!r} is not true or false")
    return LangevinSampler(**conf)


def output_problem(feats, bound: float = OUTPUT_BOUND) -> Optional[str]:
    """Why a refined (normalised) mel must not be written, or None: non-finite cells, or cells beyond ``bound``."""
    x = torch.as_tensor(feats)
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        return f"{int((~finite).sum())} of its {x.numel()} mel values are not finite"
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak > bound:
        return f"its mel reaches {peak:.3g} (normalised; speech stays well within +-{bound:g})"
    return None


__all__ = ["CONFIG_KEYS", "LangevinSampler", "LangevinResult", "NUMERIC_KEYS", "OUTPUT_BOUND", "RENAMED_KEYS",
           "config_number", "langevin_from_config", "langevin_step", "output_problem", "rename_keys"]
