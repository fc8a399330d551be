"""The energy function E(x, Y) of the EBM (arXiv 2310.12765): text tokens and a normalised log-mel -> one scalar.

Critical path (as the paper describes it): text -> transformer encoder; mel -> convolutional feature
enhancement -> non-causal transformer decoder (self-attention over frames, cross-attention to the text) ->
frame-level energy -> pooling over valid frames -> utterance energy.

Design constraints, and why:

* Langevin inference runs in eval mode on batches of one, so there is no batch norm anywhere (only layer norm),
  and an utterance's energy must not depend on how much padding or which batch-mates it has: padded frames and
  tokens are masked in every attention, zeroed before every convolution, and excluded from pooling.
* Langevin and score training differentiate E with respect to the mel, so every activation on that path is
  smooth (SiLU by default); a ReLU would make dE/dY piecewise constant and its second derivative zero, which
  starves the double-backprop ("delta") criterion.
* A *noise-conditional* network (``noise_conditional: true``) also reads the noise level sigma of its input, as
  the energies of score-based generative models do (Song & Ermon 2019): one network then holds the energy of the
  data smoothed at every level, which annealed Langevin (:mod:`ebm.langevin`) descends from coarse to fine. Its
  energy is divided by sigma (NCSN's parametrisation), so the network's own gradient only has to predict the unit
  noise direction while the score it gives scales as 1/sigma, as the true score of smoothed data does.
* The transformer blocks are ESPnet's (``EncoderLayer``, ``DecoderLayer``, ``MultiHeadedAttention``,
  ``PositionwiseFeedForward``, ``ScaledPositionalEncoding``), assembled here rather than through ESPnet's
  ``Encoder`` so that the feed-forward activation is configurable.
"""

import contextlib
from typing import Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.decoder_layer import DecoderLayer
from espnet.nets.pytorch_backend.transformer.embedding import ScaledPositionalEncoding
from espnet.nets.pytorch_backend.transformer.encoder_layer import EncoderLayer
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import PositionwiseFeedForward

ACTIVATIONS = {
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
}
POOLINGS = ("attention", "mean", "sum")


def get_activation(name: str) -> nn.Module:
    """Only smooth activations are offered: the mel gradient (and its own gradient) flows through them."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def valid_mask(lengths: torch.Tensor, maxlen: int) -> torch.Tensor:
    """(B,) lengths -> (B, maxlen) bool, True on valid positions; ``maxlen`` may exceed the longest length."""
    return torch.arange(maxlen, device=lengths.device)[None, :] < lengths.to(torch.long)[:, None]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (spectral-norm wrapped weights counted once, as their original)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class ConvFeatureEnhancement(nn.Module):
    """The paper's "feature enhancement" front end: local spectro-temporal context before attention.

    A linear projection into ``chans`` channels, then residual pre-norm blocks
    ``h + Dropout(Conv1d(act(LayerNorm(h))))``, then a projection to ``adim``. The residual path keeps every
    frame directly connected to the output so dE/dY does not vanish through a deep conv stack. Padded frames are
    zeroed before each convolution so that a frame near the end of an utterance sees the same zeros whether or
    not the batch is padded further.
    """

    def __init__(self, odim: int, adim: int, layers: int, chans: int, kernel: int, activation: str,
                 dropout_rate: float):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"prenet_kernel must be odd (symmetric 'same' padding), got {kernel}")
        self.input_proj = nn.Linear(odim, chans)
        self.norms = nn.ModuleList([LayerNorm(chans) for _ in range(layers)])
        self.convs = nn.ModuleList([nn.Conv1d(chans, chans, kernel, padding=kernel // 2) for _ in range(layers)])
        self.activation = get_activation(activation)
        self.dropout = nn.Dropout(dropout_rate)
        self.output_proj = nn.Linear(chans, adim)

    def forward(self, feats: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """feats (B,T,odim), frame_mask (B,T,1) float with 1 on valid frames -> (B,T,adim)."""
        h = self.input_proj(feats * frame_mask)
        for norm, conv in zip(self.norms, self.convs):
            z = self.activation(norm(h)) * frame_mask
            h = h + self.dropout(conv(z.transpose(1, 2)).transpose(1, 2))
        return self.output_proj(h)


class EnergyNetwork(nn.Module):
    """Conditional energy E(text, mel): low energy = likely speech for this text.

    Args:
        vocab_size: number of text tokens (index 0 is treated as padding, as in ESPnet's TTS models).
        odim: mel bins.
        adim, aheads: attention dimension and heads (shared by encoder and decoder).
        elayers, eunits: text encoder layers and feed-forward units.
        dlayers, dunits: speech decoder layers and feed-forward units.
        prenet_layers, prenet_chans, prenet_kernel: convolutional feature enhancement of the mel.
        head_units: hidden units of the frame-level energy MLP.
        dropout_rate, positional_dropout_rate: dropout of residual/feed-forward paths and of the positional
            encodings; inactive in eval mode, which Langevin inference uses.
        attention_dropout_rate: dropout of attention weights. Default 0: on the CPU it was the costliest op of a
            training step (a Bernoulli draw per frame pair), and it makes a frame's text alignment, hence its
            energy, random during training.
        pooling: ``attention`` (the paper's: softmax over valid frames of a learned per-frame score weights the
            frame energies), ``mean`` or ``sum`` over valid frames.
        activation: smooth activation of all feed-forward paths: silu, gelu, softplus, tanh.
        spectral_norm: wrap every Linear/Conv1d in spectral normalisation (an EBM stabiliser, Du & Mordatch 2019).
        use_sdpa: use PyTorch's fused attention in ESPnet's MultiHeadedAttention (faster forward/backward).
            Its fused CPU kernel has no double backward, so ``energy_and_grad(create_graph=True)`` switches to
            the math backend for that call.
        energy_scale: constant multiplier of the utterance energy (sets the temperature of exp(-E), and with it the
            size of dE/dY relative to a Langevin step size).
        noise_conditional: the network also takes the noise level ``sigma`` (B,) of its input: an embedding of
            log sigma is added to every frame after the feature enhancement, and the energy is divided by sigma.
            Every call must then give ``sigma``; trained by ``dsm`` with ``noise_conditional: true``.

    The defaults give about 2.3M parameters (the paper's size) for a character vocabulary.
    """

    def __init__(
        self,
        vocab_size: int = 41,
        odim: int = 80,
        adim: int = 192,
        aheads: int = 4,
        elayers: int = 2,
        eunits: int = 768,
        dlayers: int = 2,
        dunits: int = 768,
        prenet_layers: int = 2,
        prenet_chans: int = 128,
        prenet_kernel: int = 5,
        head_units: int = 128,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        pooling: str = "attention",
        activation: str = "silu",
        spectral_norm: bool = False,
        energy_scale: float = 1.0,
        use_sdpa: bool = False,
        noise_conditional: bool = False,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        get_activation(activation)  # validate early
        self.vocab_size = vocab_size
        self.odim = odim
        self.pooling = pooling
        self.energy_scale = float(energy_scale)
        self.noise_conditional = bool(noise_conditional)

        # text side
        self.embed = nn.Embedding(vocab_size, adim, padding_idx=0)
        self.text_pos = ScaledPositionalEncoding(adim, positional_dropout_rate)
        self.encoder = nn.ModuleList([
            EncoderLayer(
                adim,
                MultiHeadedAttention(aheads, adim, attention_dropout_rate, use_sdpa=use_sdpa),
                PositionwiseFeedForward(adim, eunits, dropout_rate, get_activation(activation)),
                dropout_rate,
                normalize_before=True,
            )
            for _ in range(elayers)
        ])
        self.encoder_norm = LayerNorm(adim)

        # speech side
        self.prenet = ConvFeatureEnhancement(odim, adim, prenet_layers, prenet_chans, prenet_kernel, activation,
                                             dropout_rate)
        self.feats_pos = ScaledPositionalEncoding(adim, positional_dropout_rate)
        self.noise_embed = None
        if self.noise_conditional:
            self.noise_embed = nn.Sequential(
                nn.Linear(2 * NOISE_FREQUENCIES, adim), get_activation(activation), nn.Linear(adim, adim))
        self.decoder = nn.ModuleList([
            DecoderLayer(
                adim,
                MultiHeadedAttention(aheads, adim, attention_dropout_rate, use_sdpa=use_sdpa),
                MultiHeadedAttention(aheads, adim, attention_dropout_rate, use_sdpa=use_sdpa),
                PositionwiseFeedForward(adim, dunits, dropout_rate, get_activation(activation)),
                dropout_rate,
                normalize_before=True,
            )
            for _ in range(dlayers)
        ])
        self.decoder_norm = LayerNorm(adim)

        # frame energies and pooling
        self.frame_head = nn.Sequential(
            nn.Linear(adim, head_units), get_activation(activation), nn.Linear(head_units, 1)
        )
        self.pool_score = nn.Linear(adim, 1) if pooling == "attention" else None

        if spectral_norm:
            targets = [m for m in self.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
            for m in targets:
                torch.nn.utils.parametrizations.spectral_norm(m)

    def encode_text(self, text: torch.Tensor, text_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B,N) tokens -> memory (B,N,adim) and its key mask (B,1,N).

        Padded token ids are replaced by 0 first: ESPnet's collate pads integer streams with a negative value.
        """
        token_mask = valid_mask(text_lengths.to(text.device), text.size(1))
        x = self.text_pos(self.embed(text.masked_fill(~token_mask, 0)))
        mask = token_mask.unsqueeze(1)
        for layer in self.encoder:
            x, mask = layer(x, mask)
        return self.encoder_norm(x), mask

    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        return_frames: bool = False,
        sigma: Optional[torch.Tensor] = None,
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Utterance energies (B,); with ``return_frames`` also frame energies (B,T) and pooling weights (B,T).

        Frame energies and weights are zero on padded frames; for ``mean``/``sum`` the weights are 1/L and 1.
        ``sigma`` (B,) or a number: the noise level of ``feats``, required by (and only by) a noise-conditional
        network; its frame energies are then divided by sigma too.
        """
        sigma = self._check_sigma(sigma, feats)
        memory, memory_mask = self.encode_text(text, text_lengths)
        valid = valid_mask(feats_lengths.to(feats.device), feats.size(1))  # (B,T) bool
        validf = valid.unsqueeze(-1).to(feats.dtype)
        h = self.prenet(feats, validf)
        if sigma is not None:
            h = h + self.noise_embed(noise_features(sigma)).unsqueeze(1)
        h = self.feats_pos(h)
        self_mask = valid.unsqueeze(1)
        for layer in self.decoder:
            h, self_mask, _, _ = layer(h, self_mask, memory, memory_mask)
        h = self.decoder_norm(h)

        frame_energy = self.frame_head(h).squeeze(-1) * valid  # (B,T)
        if sigma is not None:
            frame_energy = frame_energy / sigma.unsqueeze(-1)
        if self.pooling == "attention":
            score = self.pool_score(h).squeeze(-1)
            score = score.masked_fill(~valid, torch.finfo(score.dtype).min)
            weights = torch.softmax(score, dim=-1) * valid
        elif self.pooling == "mean":
            weights = valid.to(h.dtype) / feats_lengths.clamp(min=1).to(h.dtype).unsqueeze(-1)
        else:
            weights = valid.to(h.dtype)
        energy = self.energy_scale * (weights * frame_energy).sum(-1)
        if return_frames:
            return energy, frame_energy, weights
        return energy

    def energy_and_grad(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        create_graph: bool = False,
        sigma: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Energies (B,) and dE/dfeats (B,T,D), zero on padded frames; works under ``torch.no_grad()``.

        Per-utterance gradients come from one backward of the summed energy, which is exact because utterances
        do not interact (no batch statistics). With ``create_graph=True`` both outputs stay differentiable with
        respect to the parameters (score-based training); otherwise both are detached, so Langevin loops do not
        accumulate graphs. If ``feats`` already requires grad it is used as is (the gradient then also flows
        back into whatever produced it); otherwise a detached leaf copy is differentiated. A loss built from the
        returned gradient only trains if it is itself computed with grad enabled (under ESPnet's no-grad
        validation it is just a number, as it should be).
        """
        kernel = sdpa_kernel(SDPBackend.MATH) if create_graph else contextlib.nullcontext()
        with torch.enable_grad(), kernel:
            y = feats if (create_graph and feats.requires_grad) else feats.detach().requires_grad_(True)
            energy = self.forward(text, text_lengths, y, feats_lengths, sigma=sigma)
            (grad,) = torch.autograd.grad(energy.sum(), y, create_graph=create_graph)
            valid = valid_mask(feats_lengths.to(feats.device), feats.size(1))
            grad = grad * valid.unsqueeze(-1).to(grad.dtype)
        if not create_graph:
            energy, grad = energy.detach(), grad.detach()
        return energy, grad

    def _check_sigma(self, sigma, feats: torch.Tensor) -> Optional[torch.Tensor]:
        """``sigma`` as a (B,) tensor on ``feats``' device, or None; refused where the network has no use for it."""
        if not self.noise_conditional:
            if sigma is not None:
                raise ValueError("this energy network is not noise-conditional: give no noise level (sigma), or "
                                 "train one with energy_network_conf: {noise_conditional: true}")
            return None
        if sigma is None:
            raise ValueError("this energy network is noise-conditional: every call needs the noise level sigma of "
                             "its input (decoding: set noise_level_max and noise_level_min in the decode config)")
        sigma = torch.as_tensor(sigma, dtype=feats.dtype, device=feats.device)
        sigma = sigma.expand(feats.size(0)) if sigma.dim() == 0 else sigma.reshape(-1)
        if sigma.numel() != feats.size(0) or not bool((sigma > 0).all()):
            raise ValueError(f"sigma must be one positive noise level per utterance ({feats.size(0)}), "
                             f"got {sigma.tolist()}")
        return sigma

    def extra_repr(self) -> str:
        return (f"pooling={self.pooling}, energy_scale={self.energy_scale}, "
                f"noise_conditional={self.noise_conditional}")


def noise_kwargs(sigma) -> dict:
    """``{"sigma": sigma}``, or ``{}`` for None: the keyword that tells an energy network its input's noise level,
    passed only when there is one, so that energies without a noise input are called as before."""
    return {} if sigma is None else {"sigma": sigma}


#: Sinusoidal features of log(sigma) / 4 at octave frequencies 1 .. 2^(n-1): the slowest is monotonic over the
#: decades a schedule spans, the fastest turns once per factor 2.2 in sigma, so nearby levels get nearby
#: embeddings and share what they learn.
NOISE_FREQUENCIES = 6


def noise_features(sigma: torch.Tensor) -> torch.Tensor:
    """(B,) noise levels -> (B, 2 * NOISE_FREQUENCIES) sines and cosines of log(sigma) at octave frequencies."""
    freqs = 2.0 ** torch.arange(NOISE_FREQUENCIES, device=sigma.device, dtype=sigma.dtype)
    angle = torch.log(sigma).unsqueeze(-1) * freqs / 4.0
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


__all__ = ["EnergyNetwork", "ConvFeatureEnhancement", "count_parameters", "valid_mask", "noise_features",
           "noise_kwargs", "ACTIVATIONS", "NOISE_FREQUENCIES", "POOLINGS"]

