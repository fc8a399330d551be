"""Batched Tacotron 2 decoding on the trained model's own ESPnet modules.

ESPnet's ``Tacotron2.inference`` decodes one utterance at a time; an autoregressive decoder of this size is bound
by per-step overhead rather than arithmetic, so decoding many texts per step is the way to make stage 4 cheap.
This runs the same modules (encoder, attention, prenet, LSTM cells, feat_out/prob_out, postnet) over a padded
batch and keeps every utterance's result equal to its one-at-a-time decode:

- the convolutions of the encoder and the postnet see zeros past each utterance's end, as a lone utterance does
  (ESPnet's batched forward lets the padding leak into the last frames);
- the attention masks each utterance's padding (ESPnet's own masks);
- each utterance stops by ESPnet's rule: after the first step whose stop probability reaches ``threshold`` or
  whose length reaches ``int(len(text + eos) * maxlenratio)``, but not before ``int(... * minlenratio)``;
- finished utterances leave the batch, so a long one does not make the others run on;
- a text repeated in the batch (stage 4 pools a text's decodes) is encoded once;
- location-sensitive attention, whose passes over (batch, tokens, units) cost as much as the LSTM once the
  per-step overhead is gone, is computed from ``AttLoc``'s weights in fewer passes (``LocationAttention``).

Prenet dropout stays on at inference, as in ESPnet, and its masks are drawn for the whole batch at each step:
a decode is reproducible for the same texts, order and batch size, not utterance by utterance as seeded
one-at-a-time decodes are.
"""

import math

import torch
import torch.nn.functional as F

from ebm.cli import EbmError

POSTNET_CHUNK = 16
DEFAULTS = dict(threshold=0.5, minlenratio=0.0, maxlenratio=10.0, use_att_constraint=False, backward_window=1,
                forward_window=3)


def pad_mask(lengths, maxlen, device):
    """(B, maxlen) bool, True past each length."""
    return torch.arange(maxlen, device=device)[None, :] >= torch.as_tensor(lengths, device=device)[:, None]


class BatchDecoder:
    """Decode batches of token sequences with an ESPnet TTS model (``ESPnetTTSModel`` whose ``tts`` is Tacotron 2).

    ``decode`` returns, per utterance, what ``Text2Speech`` returns one at a time: ``feat_gen`` (normalised
    features, frames x mels), ``feat_gen_denorm``, ``prob`` (stop probabilities; free-running only) and
    ``att_w`` (decoder steps x input tokens).
    """

    def __init__(self, model, **decode_conf):
        unknown = set(decode_conf) - set(DEFAULTS)
        if unknown:
            raise EbmError(f"unknown decoding options {sorted(unknown)}: use {', '.join(DEFAULTS)}")
        self.conf = {**DEFAULTS, **{k: v for k, v in decode_conf.items() if v is not None}}
        if self.conf["use_att_constraint"]:
            raise EbmError("use_att_constraint: ESPnet's attention constraint works one utterance at a time; "
                           "turn it off or decode one at a time (decode_baseline --batch_size 1, "
                           "tts.sh --decode_batch_size 1)")
        self.model = model
        tts = model.tts
        if type(tts).__name__ != "Tacotron2":
            raise EbmError(f"batched decoding supports ESPnet's Tacotron2, not {type(tts).__name__}; "
                           "decode one at a time (--batch_size 1)")
        if tts.use_gst or tts.spks is not None or tts.langs is not None or tts.spk_embed_dim is not None:
            raise EbmError("batched decoding does not support GST, speaker or language embeddings; "
                           "decode one at a time (--batch_size 1)")
        if type(tts.dec.att).__name__ not in ("AttLoc", "AttForward"):
            raise EbmError(f"batched decoding supports location and forward attention, not "
                           f"{type(tts.dec.att).__name__}; decode one at a time (--batch_size 1)")
        self.tts = tts

    @property
    def device(self):
        return next(self.tts.parameters()).device

    def features(self, speech):
        """Normalised features of one waveform, as ``ESPnetTTSModel.inference`` computes them for teacher forcing."""
        feats = speech
        if self.model.feats_extract is not None:
            feats = self.model.feats_extract(speech[None])[0][0]
        if self.model.normalize is not None:
            feats = self.model.normalize(feats[None])[0][0]
        return feats

    @torch.no_grad()
    def decode(self, texts, speeches=None, num_frames=None):
        """Decode token-id sequences (1-D LongTensors without eos); with ``speeches`` (waveforms), teacher-forced.

        ``num_frames`` forces each free-running decode's length (rounded up to the reduction factor), ignoring the
        stop token: benchmarks need it, since a model with random weights never predicts its end.
        """
        tts, device = self.tts, self.device
        xs = [F.pad(torch.as_tensor(x, dtype=torch.long, device=device), [0, 1], value=tts.eos) for x in texts]
        ilens = [len(x) for x in xs]
        # stage 4 pools a text's seeded decode and its prenet-dropout samples: encode each distinct text once
        firsts, seen, which = [], {}, []  # each distinct text's first row; each row's distinct text
        for i, x in enumerate(xs):
            key = tuple(x.tolist())
            if key not in seen:
                seen[key] = len(firsts)
                firsts.append(i)
            which.append(seen[key])
        hs = self.encode(torch.nn.utils.rnn.pad_sequence([xs[i] for i in firsts], batch_first=True,
                                                         padding_value=tts.padding_idx), [ilens[i] for i in firsts])
        hs = hs[torch.as_tensor(which, device=device)]
        if speeches is not None:
            if len(speeches) != len(texts):
                raise EbmError(f"{len(texts)} texts but {len(speeches)} waveforms")
            feats = [self.features(torch.as_tensor(s, device=device)) for s in speeches]
            outs = self.run_decoder(hs, ilens, teacher=feats)
        else:
            outs = self.run_decoder(hs, ilens, num_frames=num_frames)
        for out in outs:
            if self.model.normalize is not None:
                out["feat_gen_denorm"] = self.model.normalize.inverse(out["feat_gen"].clone()[None])[0][0]
        return outs

    def encode(self, xs, ilens):
        """ESPnet's encoder over a padded batch, with every convolution seeing zeros past each text's end."""
        enc = self.tts.enc
        mask = pad_mask(ilens, xs.size(1), xs.device)[:, None, :]  # (B, 1, T)
        h = enc.embed(xs).transpose(1, 2)
        for conv in enc.convs or []:
            h = h.masked_fill(mask, 0.0)
            h = h + conv(h) if enc.use_residual else conv(h)
        h = h.masked_fill(mask, 0.0).transpose(1, 2)
        if enc.blstm is None:
            return h
        packed = torch.nn.utils.rnn.pack_padded_sequence(h, torch.tensor(ilens), batch_first=True,
                                                         enforce_sorted=False)
        enc.blstm.flatten_parameters()
        h, _ = enc.blstm(packed)
        return torch.nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=xs.size(1))[0]

    def postnet(self, befores):
        """Postnet outputs of (L_i, odim) decoder outputs, in chunks of ``POSTNET_CHUNK`` of similar length (a
        convolution's cost per frame does not fall with the batch, so a chunk pads less and costs no more), each
        layer seeing zeros past each utterance's end, ESPnet's tanh as ``sigmoid_tanh``."""
        dec = self.tts.dec
        if dec.postnet is None:
            return befores
        afters = [None] * len(befores)
        order = sorted(range(len(befores)), key=lambda i: -len(befores[i]))
        for start in range(0, len(order), POSTNET_CHUNK):
            rows = order[start:start + POSTNET_CHUNK]
            lengths = [len(befores[i]) for i in rows]
            before = torch.nn.utils.rnn.pad_sequence([befores[i] for i in rows], batch_first=True).transpose(1, 2)
            mask = pad_mask(lengths, before.size(2), before.device)[:, None, :]
            x = before
            for layer in dec.postnet.postnet:  # Sequential(Conv1d, BatchNorm1d, [Tanh,] Dropout)
                x = x.masked_fill(mask, 0.0)
                for module in layer:
                    x = sigmoid_tanh(x) if isinstance(module, torch.nn.Tanh) else module(x)
            after = (before + x).transpose(1, 2)  # (chunk, L, odim)
            for j, i in enumerate(rows):
                afters[i] = after[j, :lengths[j]]
        return afters

    def run_decoder(self, hs, ilens, teacher=None, num_frames=None):
        """The decoder loop of ESPnet's ``Decoder.inference`` (or ``forward`` with ``teacher`` features) over a batch.

        Rows that have finished are dropped from the batch (states, attention cache and padding trimmed), so
        each step costs what its unfinished utterances need.
        """
        dec, conf = self.tts.dec, self.conf
        r, odim, batch = dec.reduction_factor, dec.odim, hs.size(0)
        device = hs.device
        if teacher is not None:
            # ESPnet feeds every r-th frame and decodes len // r steps of r frames.
            teach = torch.nn.utils.rnn.pad_sequence([y[r - 1::r] for y in teacher], batch_first=True)
            max_steps = torch.tensor([len(y) // r for y in teacher], device=device)
            min_steps = max_steps
        elif num_frames is not None:
            max_steps = torch.tensor([max(1, math.ceil(n / r)) for n in num_frames], device=device)
            min_steps = max_steps
        else:
            maxlen = [int(n * conf["maxlenratio"]) for n in ilens]
            minlen = [int(n * conf["minlenratio"]) for n in ilens]
            # step s ends at frame s * r: the first s reaching maxlen / minlen
            max_steps = torch.tensor([max(1, math.ceil(m / r)) for m in maxlen], device=device)
            min_steps = torch.tensor([max(0, math.ceil(m / r)) for m in minlen], device=device)
        hlens = list(ilens)
        z = [hs.new_zeros(batch, cell_hidden(lstm)) for lstm in dec.lstm]
        c = [hs.new_zeros(batch, cell_hidden(lstm)) for lstm in dec.lstm]
        prev_out = hs.new_zeros(batch, odim)
        prev_att_w = None
        dec.att.reset()
        location = LocationAttention(dec.att) if LocationAttention.handles(dec.att) else None
        if location is not None:
            enc_proj, att_mask = dec.att.mlp_enc(hs), pad_mask(hlens, hs.size(1), device)
        rows = torch.arange(batch, device=device)  # original index of each active row
        segments, chunk_outs, chunk_probs, chunk_atts = [], [], [], []
        steps = [0] * batch
        step = 0
        while True:
            step += 1
            if location is not None:
                att_c, att_w = location(hs, enc_proj, att_mask, hlens, z[0], prev_att_w)
            else:
                att_c, att_w = dec.att(hs, hlens, z[0], prev_att_w)
            prenet_out = dec.prenet(prev_out) if dec.prenet is not None else prev_out
            z[0], c[0] = dec.lstm[0](torch.cat([att_c, prenet_out], dim=1), (z[0], c[0]))
            for i in range(1, len(dec.lstm)):
                z[i], c[i] = dec.lstm[i](z[i - 1], (z[i], c[i]))
            zcs = torch.cat([z[-1], att_c], dim=1) if dec.use_concate else z[-1]
            out = dec.feat_out(zcs).view(zcs.size(0), odim, -1)  # (B, odim, r)
            prob = torch.sigmoid(dec.prob_out(zcs))  # (B, r)
            chunk_outs.append(out)
            chunk_probs.append(prob)
            chunk_atts.append(att_w)
            if teacher is not None:
                prev_out = teach[:, step - 1] if step <= teach.size(1) else prev_out
                done = step >= max_steps
            else:
                prev_out = out[:, :, -1]
                if dec.output_activation_fn is not None:
                    prev_out = dec.output_activation_fn(prev_out)
                stop = (prob >= conf["threshold"]).any(dim=1)
                done = (stop | (step >= max_steps)) & (step >= min_steps)
            if dec.cumulate_att_w and prev_att_w is not None:
                prev_att_w = prev_att_w + att_w
            else:
                prev_att_w = att_w
            if not bool(done.any()):
                continue
            for i in rows[done].tolist():
                steps[i] = step
            segments.append((rows, torch.cat(chunk_outs, dim=2), torch.stack(chunk_probs, dim=1),
                             chunk_atts))
            chunk_outs, chunk_probs, chunk_atts = [], [], []
            keep = ~done
            if not bool(keep.any()):
                break
            idx = keep.nonzero(as_tuple=True)[0]
            rows = rows[idx]
            hlens = [hlens[i] for i in idx.tolist()]
            tmax = max(hlens)
            hs = hs[idx, :tmax]
            z = [t[idx] for t in z]
            c = [t[idx] for t in c]
            prev_out, prev_att_w = prev_out[idx], prev_att_w[idx, :tmax]
            max_steps, min_steps = max_steps[idx], min_steps[idx]
            if teacher is not None:
                teach = teach[idx]
            if location is not None:
                enc_proj, att_mask = enc_proj[idx, :tmax], att_mask[idx, :tmax]
            dec.att.reset()  # its cache holds the old batch's encoder states and mask
        return self.assemble(segments, steps, ilens, batch)

    def assemble(self, segments, steps, ilens, batch):
        """Per-utterance outputs from the segments (one per batch composition), postnet applied over the batch."""
        dec, r = self.tts.dec, self.tts.dec.reduction_factor
        parts = [dict(outs=[], probs=[], atts=[]) for _ in range(batch)]
        for rows, outs, probs, atts in segments:
            for j, i in enumerate(rows.tolist()):
                parts[i]["outs"].append(outs[j])
                parts[i]["probs"].append(probs[j])
                parts[i]["atts"].extend(a[j, :ilens[i]] for a in atts)
        lengths = [s * r for s in steps]
        afters = self.postnet([torch.cat(p["outs"], dim=1).transpose(0, 1)[:n] for p, n in zip(parts, lengths)])
        if dec.output_activation_fn is not None:
            afters = [dec.output_activation_fn(a) for a in afters]
        return [dict(feat_gen=afters[i],
                     prob=torch.cat(parts[i]["probs"], dim=0).reshape(-1)[:lengths[i]],
                     att_w=torch.stack(parts[i]["atts"][:steps[i]], dim=0))
                for i in range(batch)]


class LocationAttention:
    """ESPnet's location-sensitive attention (``AttLoc.forward``) over a batch, from the module's own weights.

    On a CPU this attention costs a batched decoder step as much as its LSTM, in passes over a (batch, tokens,
    units) tensor; three rewrites, equal up to float rounding, halve it:

    - the location convolution and its projection ``mlp_att`` are both linear, so they fold into one matrix applied
      to windows of the previous weights, added to the encoder's projection in the same product;
    - ``tanh(x) = 2 sigmoid(2x) - 1``, with the affine part folded into the energy vector ``gvec`` (torch's CPU
      tanh costs several sigmoids);
    - the context is a batched matrix product, not a broadcast product summed over tokens.
    """

    @staticmethod
    def handles(att):
        return type(att).__name__ == "AttLoc" and not att.han_mode

    def __init__(self, att):
        conv = att.loc_conv.weight  # (aconv_chans, 1, 1, 2 K + 1): a cross-correlation padded by K
        self.half_width = conv.size(-1) // 2
        self.location = (att.mlp_att.weight @ conv.flatten(1)).t().contiguous()  # (2 K + 1, adim)
        self.mlp_dec = att.mlp_dec
        self.energy_weight = 2.0 * att.gvec.weight.t()  # (adim, 1)
        self.energy_bias = att.gvec.bias - att.gvec.weight.sum()

    def __call__(self, hs, enc_proj, mask, hlens, dec_z, att_prev, scaling=2.0):
        """Context (B, eunits) and weights (B, T) given ``enc_proj = att.mlp_enc(hs)`` and the padding ``mask``."""
        batch, tmax, adim = enc_proj.shape
        if att_prev is None:  # uniform over each text, as ESPnet starts
            att_prev = (~mask).to(hs.dtype) / torch.as_tensor(hlens, dtype=hs.dtype, device=hs.device)[:, None]
        k = self.half_width
        windows = F.pad(att_prev, (k, k)).unfold(1, 2 * k + 1, 1).reshape(batch * tmax, 2 * k + 1)
        x = torch.addmm(enc_proj.reshape(batch * tmax, adim), windows, self.location).view(batch, tmax, adim)
        x += self.mlp_dec(dec_z)[:, None, :]
        e = (torch.sigmoid_(x.mul_(2.0)) @ self.energy_weight).squeeze(2) + self.energy_bias
        w = torch.softmax(scaling * e.masked_fill(mask, -float("inf")), dim=1)
        return torch.bmm(w[:, None, :], hs).squeeze(1), w


def sigmoid_tanh(x):
    """``tanh(x)`` as ``2 sigmoid(2x) - 1``, equal up to float rounding: torch's CPU tanh costs several sigmoids."""
    return torch.sigmoid_(x * 2.0).mul_(2.0).sub_(1.0)


def cell_hidden(lstm):
    """Hidden size of a decoder cell (an LSTMCell, possibly inside ESPnet's ZoneOutCell)."""
    return getattr(lstm, "hidden_size", None) or lstm.cell.hidden_size
