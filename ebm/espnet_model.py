"""The EBM as an ESPnet model: mel extraction and normalisation, negatives, energies, criteria, statistics.

ESPnet's trainer calls ``forward(**batch)`` with the data streams the task declares: ``text`` and ``speech``
(the waveform; the mel is extracted here exactly as for the baseline) and, optionally, Tacotron 2's stage 4
decodes ``tf_feats`` (teacher-forced) and ``fr_feats`` (free-running), as denormalised log-mels that are
normalised here with the same statistics. Everything the negative samplers or criteria need arrives in
``streams``, together with ``energy_fn`` for samplers that run the model itself (Langevin samples, as negatives or
as hypotheses of the delta criterion).

:meth:`ESPnetEBMModel.inference` is decoding (ESPnet's ``inference``): it normalises denormalised hypotheses, runs
a :class:`ebm.langevin.LangevinSampler` on them and denormalises the result; every decoding entry point goes
through it.

Validation also measures what decoding needs, the *refinement gain*: a few gradient steps on the energy from a
hypothesis should bring it closer to the reference. The hypothesis is ``refine_from``: Tacotron 2's teacher-forced
output (the default; a noisy reference when that stream is absent), or its free-running output, which is what
Langevin decoding starts from, compared with the reference DTW-warped onto its timing (as the ``delta``
criterion's ``align: dtw`` does). ``refine_gain`` = relative reduction of the mean per-frame distance
(``refine_distance``: ``squared``, a mean squared error, or ``euclidean``, the per-frame distance that the mel
distance and MCD average; both are logged, as ``refine_gain_squared`` and ``refine_gain_euclidean``); positive is
good, and it is the default model-selection criterion (``best_model_criterion: [[valid, refine_gain, max]]``).
Its steps are decoding's own (:func:`ebm.langevin.langevin_step`, noiseless, the gradient normalised per
utterance), so the checkpoint it selects is the one whose decoding step helps most.
An energy trained on free-running hypotheses should be selected on them: a checkpoint chosen by its gain on
teacher-forced hypotheses need not be the one that corrects free-running ones best.
"""

from typing import Any, Dict, Mapping, Optional, Sequence

import torch
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.torch_utils.device_funcs import force_gatherable

from ebm.alignment import dtw_warped_reference
from ebm.criteria import FRAME_DISTANCES, CombinedCriterion, frame_distance
from ebm.energy_network import noise_kwargs, valid_mask
from ebm.langevin import LangevinSampler, langevin_step
from ebm.negative_samplers import MixedSampler


def fit_to_lengths(x: torch.Tensor, x_lengths: torch.Tensor, lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """Give each hypothesis its reference's length: crop, or repeat its last frame.

    Tacotron 2 with reduction factor r trains on lengths cut to a multiple of r, so its teacher-forced output may
    be up to r-1 frames shorter than the reference; the criteria need equal lengths.
    """
    B, _, D = x.shape
    out = x.new_zeros(B, frames, D)
    for b in range(B):
        n, m = int(x_lengths[b]), int(lengths[b])
        k = min(n, m)
        out[b, :k] = x[b, :k]
        if m > k and k > 0:
            out[b, k:m] = x[b, k - 1]
    return out


class ESPnetEBMModel(AbsESPnetModel):
    def __init__(
        self,
        feats_extract: Optional[torch.nn.Module],
        normalize: Optional[torch.nn.Module],
        energy_network: torch.nn.Module,
        samplers: Sequence[Mapping[str, Any]] = ({"name": "random_masking", "weight": 1.0},),
        sampler_mode: str = "all",
        criteria: Sequence[Mapping[str, Any]] = ({"name": "binary_nce", "weight": 1.0},),
        refine_steps: int = 5,
        refine_step_size: float = 0.05,
        refine_noise: float = 0.5,
        refine_normalize: bool = True,
        refine_from: str = "teacher_forced",
        refine_noise_level: Optional[float] = None,
        refine_distance: str = "squared",
    ):
        super().__init__()
        self.feats_extract = feats_extract
        self.normalize = normalize
        self.energy_network = energy_network
        self.criterion = CombinedCriterion(list(criteria))
        self.noise_conditional = bool(getattr(energy_network, "noise_conditional", False))
        told = self.criterion.noise_conditional_labels
        if self.noise_conditional and (self.criterion.needs_energies or len(told) != len(self.criterion.members)):
            raise ValueError("a noise-conditional energy network needs the noise level of every input it is trained "
                             "on: train it with dsm criteria that have noise_conditional: true, and nothing else")
        if told and not self.noise_conditional:
            raise ValueError(f"criteria {told} give the network noise levels, but energy_network_conf has no "
                             "noise_conditional: true")
        if self.noise_conditional and not (refine_noise_level is not None and refine_noise_level > 0):
            raise ValueError("a noise-conditional energy network needs model_conf: refine_noise_level (the noise "
                             "level at which validation's refinement steps read the hypothesis, e.g. the size of "
                             "Tacotron 2's error)")
        self.refine_noise_level = refine_noise_level if self.noise_conditional else None
        self.sampler = MixedSampler(list(samplers), mode=sampler_mode) if self.criterion.needs_energies else None
        self.refine_steps = refine_steps
        self.refine_step_size = refine_step_size
        self.refine_noise = refine_noise
        self.refine_normalize = refine_normalize
        if refine_from not in ("teacher_forced", "free_running"):
            raise ValueError(f"refine_from must be 'teacher_forced' or 'free_running', not {refine_from!r}")
        self.refine_from = refine_from
        if refine_distance not in FRAME_DISTANCES:
            raise ValueError(f"refine_distance must be one of {FRAME_DISTANCES}, not {refine_distance!r}")
        self.refine_distance = refine_distance

    def _mel(self, speech, speech_lengths):
        if self.feats_extract is not None:
            feats, feats_lengths = self.feats_extract(speech, speech_lengths)
        else:  # features given by the data loader
            feats, feats_lengths = speech, speech_lengths
        return self._normalize(feats, feats_lengths), feats_lengths

    def _normalize(self, feats, lengths):
        if self.normalize is not None:
            feats, _ = self.normalize(feats, lengths)
        return feats * valid_mask(lengths, feats.size(1)).unsqueeze(-1).to(feats.dtype)

    def _streams(self, feats, feats_lengths, tf_feats, tf_feats_lengths, fr_feats, fr_feats_lengths):
        streams = {}
        if tf_feats is not None:
            tf = self._normalize(tf_feats, tf_feats_lengths)
            streams["tf_feats"] = fit_to_lengths(tf, tf_feats_lengths, feats_lengths, feats.size(1))
            streams["tf_feats_lengths"] = feats_lengths
        if fr_feats is not None:
            streams["fr_feats"] = self._normalize(fr_feats, fr_feats_lengths)
            streams["fr_feats_lengths"] = fr_feats_lengths
        return streams

    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        tf_feats: Optional[torch.Tensor] = None,
        tf_feats_lengths: Optional[torch.Tensor] = None,
        fr_feats: Optional[torch.Tensor] = None,
        fr_feats_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ):
        feats, feats_lengths = self._mel(speech, speech_lengths)
        streams = self._streams(feats, feats_lengths, tf_feats, tf_feats_lengths, fr_feats, fr_feats_lengths)
        net = self.energy_network

        def score_fn(y, lengths, sigma=None):
            return net.energy_and_grad(text, text_lengths, y, lengths, create_graph=self.training,
                                       **noise_kwargs(sigma))[1]

        e_pos = e_neg = None
        if self.sampler is not None:
            e_pos = net(text, text_lengths, feats, feats_lengths)
            negatives = self.sampler(feats, feats_lengths, energy_fn=self._energy_fn(text, text_lengths), **streams)
            e_neg = {}
            for label, neg in negatives.items():
                if neg.index is None:
                    e_neg[label] = net(text, text_lengths, neg.feats, neg.lengths)
                else:
                    idx = neg.index
                    e_neg[label] = (net(text[idx], text_lengths[idx], neg.feats, neg.lengths), idx)
        with torch.enable_grad():  # validation runs under no_grad; score criteria need dE/dY
            loss, stats = self.criterion(e_pos=e_pos, e_neg=e_neg, ref=feats, lengths=feats_lengths,
                                         score_fn=score_fn,
                                         streams={**streams, "energy_fn": self._energy_fn(text, text_lengths)})
        if not self.training:
            stats.update(self.refinement_gain(text, text_lengths, feats, feats_lengths, streams))
        batch_size = text.size(0)
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def _energy_fn(self, text, text_lengths):
        net = self.energy_network

        def energy_fn(y, lengths, index=None):
            t, tl = (text, text_lengths) if index is None else (text[index], text_lengths[index])
            return net.energy_and_grad(t, tl, y, lengths)

        return energy_fn

    @torch.no_grad()
    def refinement_gain(self, text, text_lengths, feats, feats_lengths, streams) -> Dict[str, float]:
        """How much ``refine_steps`` descent steps on E bring a hypothesis towards the reference.

        The steps are decoding's (:func:`ebm.langevin.langevin_step` without noise): normalised to RMS
        ``refine_step_size`` over each utterance (``refine_normalize``, for NCE energies, whose scale is
        arbitrary) or raw (for score-trained energies, whose gradient is the predicted correction itself).
        ``grad_rms`` is the last step's gradient RMS over the batch's valid cells (a scale to log). A
        noise-conditional network reads the hypothesis at ``refine_noise_level``; one raw step of size
        ``refine_noise_level ** 2`` is then its denoiser's estimate of the reference (Tweedie's formula).
        """
        if self.refine_from == "free_running":
            if "fr_feats" not in streams:
                raise ValueError("refine_from: free_running needs the fr_feats stream (stage 4's free-running "
                                 "decodes of the training and validation sets)")
            lengths = streams["fr_feats_lengths"]
            y = streams["fr_feats"].clone()
            target = dtw_warped_reference(feats, feats_lengths, y, lengths)
        else:
            lengths, target = feats_lengths, feats
            if "tf_feats" in streams:
                y = streams["tf_feats"].clone()
            else:
                y = feats + self.refine_noise * torch.randn_like(feats)
        valid = valid_mask(lengths, y.size(1)).unsqueeze(-1)
        mask = valid.to(y.dtype)
        y = y * mask
        frames = mask.sum() * y.size(-1)

        def dist(a):
            """Both distances over the batch's valid frames, per mel bin (RMS for ``euclidean``)."""
            diff = a - target
            per_frame = {k: frame_distance(diff, k) * mask[..., 0] for k in FRAME_DISTANCES}
            return {"squared": float(per_frame["squared"].sum() / frames),
                    "euclidean": float(per_frame["euclidean"].sum() / mask.sum() / y.size(-1) ** 0.5)}

        d0 = dist(y)
        grad_norm = 0.0
        noise = noise_kwargs(self.refine_noise_level)
        for _ in range(self.refine_steps):
            _, g = self.energy_network.energy_and_grad(text, text_lengths, y, lengths, **noise)
            grad_norm = float(((g * mask).pow(2).sum() / frames).sqrt())
            y = langevin_step(y, g, valid, self.refine_step_size, sigma=0.0, normalize_grad=self.refine_normalize)
        d1 = dist(y)
        gains = {k: (d0[k] - d1[k]) / max(d0[k], 1e-12) for k in FRAME_DISTANCES}
        k = self.refine_distance
        return {"refine_dist0": d0[k], "refine_dist": d1[k], "refine_gain": gains[k],
                **{f"refine_gain_{name}": g for name, g in gains.items()}, "grad_rms": grad_norm}

    @torch.no_grad()
    def inference(self, text: torch.Tensor, text_lengths: torch.Tensor, init_feats: torch.Tensor,
                  init_feats_lengths: torch.Tensor, sampler: LangevinSampler,
                  energy_network: Optional[torch.nn.Module] = None, record_every: int = 1) -> Dict[str, Any]:
        """Refine a padded batch of initial hypotheses: normalise -> Langevin -> denormalise.

        ``text`` (B, N) token ids, ``init_feats`` (B, T, D) *denormalised* log-mels (Tacotron 2's
        ``feat_gen_denorm``), both zero-padded, with their lengths. ``energy_network`` replaces the model's own
        (a product of experts that shares its normalisation). Returns ``feat_gen`` (normalised, as the chain
        left it, padded frames zero), ``feat_gen_denorm`` (what a vocoder takes), ``lengths`` and ``result``
        (the :class:`ebm.langevin.LangevinResult`: energies, stops).
        """
        lengths = init_feats_lengths.to(init_feats.device)
        y = self._normalize(init_feats.clone(), lengths)
        res = sampler.run(energy_network if energy_network is not None else self.energy_network,
                          text, text_lengths, y, lengths, record_every)
        denorm = res.feats
        if self.normalize is not None:
            denorm, _ = self.normalize.inverse(res.feats.clone(), lengths)
        return {"feat_gen": res.feats, "feat_gen_denorm": denorm, "lengths": res.lengths, "result": res}

    def collect_feats(self, text, text_lengths, speech, speech_lengths, **kwargs) -> Dict[str, torch.Tensor]:
        feats, feats_lengths = self.feats_extract(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": feats_lengths}
