"""Decode a key list with ESPnet's Tacotron 2 in several modes at once, in ESPnet's decode layout.

Stage 4 needs each utterance decoded up to three ways: teacher-forced (the model-based negatives, reference
length), free-running with a fixed seed (the initial hypotheses and the baseline's own output), and extra
stochastic free-running samples (prenet dropout stays on at inference, so each seed gives another negative).
This uses ESPnet's inference class, ``Text2Speech``, but loads ESPnet once for all modes and plots attention for
only a few utterances: ``espnet2.bin.tts_inference`` plots every one, which costs more than decoding on a CPU.
With ``--batch_size`` > 1 the utterances are decoded in batches on the same model's modules
(``ebm.batch_decoding``), several times faster; ``--batch_size 1`` keeps ESPnet's one-at-a-time path for comparison.

Writes, per mode, ``OUTPUT_DIR/<mode>/{norm,denorm}/feats.scp`` (+ .npy), ``speech_shape/speech_shape``,
``att_ws/<key>.png`` for the first ``--num_att_plots`` keys, and ``rtf`` (seconds and frames per utterance).
"""

import argparse
import contextlib
import io
import logging
import os
import time

import soundfile as sf
import yaml

from ebm.cli import EbmError, run, setup_logging
from ebm.decode_options import DECODE_KEYS
from ebm.io import read_scp, write_atomic


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_file", required=True)
    p.add_argument("--train_config", required=True)
    p.add_argument("--inference_config", default=None, help="YAML with " + ", ".join(DECODE_KEYS))
    p.add_argument("--text", required=True, help="Kaldi text")
    p.add_argument("--wav_scp", default=None, help="needed by teacher_forced")
    p.add_argument("--key_file", default=None, help="decode only these keys (first column)")
    p.add_argument("--modes", default="teacher_forced,free_running",
                   help="comma-separated: teacher_forced, free_running, free_running_sampleN")
    p.add_argument("--seed", type=int, default=0, help="seed of teacher_forced and free_running")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_att_plots", type=int, default=3)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=1,
                   help="utterances decoded together (ebm.batch_decoding); 1: ESPnet's Text2Speech one at a time")
    return p


def mode_options(mode, seed):
    if mode == "teacher_forced":
        return dict(use_teacher_forcing=True, seed=seed)
    if mode == "free_running":
        return dict(use_teacher_forcing=False, seed=seed)
    if mode.startswith("free_running_sample") and mode[len("free_running_sample"):].isdigit():
        return dict(use_teacher_forcing=False, seed=int(mode[len("free_running_sample"):]))
    raise EbmError(f"unknown decode mode {mode!r}: teacher_forced, free_running or free_running_sampleN")


def plot_attention(att_ws, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    att = att_ws.cpu().numpy()
    att = att.reshape(-1, *att.shape[-2:])[0] if att.ndim > 2 else att
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.imshow(att.T, aspect="auto", origin="lower", interpolation="none")
    ax.set_xlabel("decoder step")
    ax.set_ylabel("input token")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class ModeOutput:
    """One mode's output directory in ESPnet's decode layout, written in the key file's order whatever the
    decoding order: features go to disk as they come; the scp, shape and rtf files appear only once every key is
    in, so an interrupted job leaves no feats.scp that looks complete."""

    def __init__(self, out, keys, num_att_plots):
        from espnet2.fileio.npy_scp import NpyScpWriter

        self.out, self.keys = out, keys
        self.plot_keys = set(keys[:num_att_plots])
        for sub in ["norm", "denorm", "speech_shape", "att_ws"]:
            os.makedirs(os.path.join(out, sub), exist_ok=True)
        self.norm = NpyScpWriter(f"{out}/norm", f"{out}/norm/feats.scp.partial")
        self.denorm = NpyScpWriter(f"{out}/denorm", f"{out}/denorm/feats.scp.partial")
        self.shapes, self.rtf = {}, {}

    def add(self, key, result, seconds):
        feat = result["feat_gen"].cpu().numpy()
        self.norm[key] = feat
        self.denorm[key] = result["feat_gen_denorm"].cpu().numpy()
        self.shapes[key] = f"{key} {feat.shape[0]},{feat.shape[1]}\n"
        self.rtf[key] = f"{key} {seconds:.4f} {feat.shape[0]}\n"
        if key in self.plot_keys and result.get("att_w") is not None:
            plot_attention(result["att_w"], f"{self.out}/att_ws/{key}.png")

    def close(self):
        self.norm.close()
        self.denorm.close()
        for writer, sub in [(self.norm, "norm"), (self.denorm, "denorm")]:
            write_atomic(f"{self.out}/{sub}/feats.scp", "".join(f"{k} {writer.get_path(k)}\n" for k in self.keys))
            os.remove(f"{self.out}/{sub}/feats.scp.partial")
        write_atomic(f"{self.out}/speech_shape/speech_shape", "".join(self.shapes[k] for k in self.keys))
        write_atomic(f"{self.out}/rtf", "".join(self.rtf[k] for k in self.keys))
        frames = sum(int(self.shapes[k].split()[1].split(",")[0]) for k in self.keys)
        return frames


def decode_one_at_a_time(args, modes, decode_conf, texts, keys, wavs, device):
    """ESPnet's ``Text2Speech``, one utterance per call, each reseeded: the reference the batched path matches."""
    import torch

    with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
        from espnet2.bin.tts_inference import Text2Speech

    for mode in modes:
        t2s = Text2Speech(args.train_config, args.model_file, device=device, always_fix_seed=True,
                          **decode_conf, **mode_options(mode, args.seed))
        t2s.vocoder = None  # ESPnet would also run Griffin-Lim on every output; stage 4 keeps only the mels
        out = os.path.join(args.output_dir, mode)
        writer, t_mode = ModeOutput(out, keys, args.num_att_plots), time.perf_counter()
        for key in keys:
            speech = None
            if mode == "teacher_forced":
                speech, _ = sf.read(wavs[key], dtype="float32")
                speech = torch.from_numpy(speech)
            t0 = time.perf_counter()
            with torch.no_grad():
                result = t2s(texts[key], speech=speech)
            writer.add(key, result, time.perf_counter() - t0)
        frames = writer.close()
        logging.info(f"{mode}: {len(keys)} utterances, {frames} frames in {time.perf_counter() - t_mode:.1f} s "
                     f"-> {out}")


def decode_batched(args, modes, decode_conf, texts, keys, wavs, device):
    """``ebm.batch_decoding`` over batches sorted by length: teacher-forced batches by audio length, and the
    free-running modes pooled (a text's seeded decode and its dropout samples share a batch) by text length.
    Each utterance's rtf seconds are its batch's time shared in proportion to frames."""
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        from espnet2.bin.tts_inference import Text2Speech
        from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from ebm.batch_decoding import BatchDecoder

    t2s = Text2Speech(args.train_config, args.model_file, device=device)
    decoder = BatchDecoder(t2s.model, **decode_conf)
    tokens = {k: torch.as_tensor(t2s.preprocess_fn("<dummy>", dict(text=texts[k]))["text"]) for k in keys}
    writers = {m: ModeOutput(os.path.join(args.output_dir, m), keys, args.num_att_plots) for m in modes}
    groups = []
    if "teacher_forced" in modes:
        groups.append(sorted(((k, "teacher_forced") for k in keys), key=lambda j: -sf.info(wavs[j[0]]).frames))
    free = [m for m in modes if m != "teacher_forced"]
    if free:
        groups.append(sorted(((k, m) for k in keys for m in free), key=lambda j: -len(tokens[j[0]])))
    for jobs in groups:
        set_all_random_seed(args.seed)
        t_group, frames = time.perf_counter(), 0
        for start in range(0, len(jobs), args.batch_size):
            batch = jobs[start:start + args.batch_size]
            speeches = None
            if batch[0][1] == "teacher_forced":
                speeches = [torch.from_numpy(sf.read(wavs[k], dtype="float32")[0]) for k, _ in batch]
            t0 = time.perf_counter()
            results = decoder.decode([tokens[k] for k, _ in batch], speeches=speeches)
            seconds = time.perf_counter() - t0
            total = sum(len(r["feat_gen"]) for r in results)
            for (key, mode), result in zip(batch, results):
                writers[mode].add(key, result, seconds * len(result["feat_gen"]) / total)
            frames += total
        logging.info(f"{','.join(sorted({m for _, m in jobs}))}: {len(jobs)} decodes, {frames} frames in "
                     f"{time.perf_counter() - t_group:.1f} s (batches of {args.batch_size})")
    for mode in modes:
        writers[mode].close()


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    if args.batch_size < 1:
        raise EbmError(f"--batch_size {args.batch_size}: use 1 (one at a time) or more")
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        mode_options(mode, args.seed)  # rejects unknown modes before any work
    decode_conf = {}
    if args.inference_config:
        with open(args.inference_config) as f:
            decode_conf = {k: v for k, v in (yaml.safe_load(f) or {}).items() if k in DECODE_KEYS}
    texts = dict(read_scp(args.text))
    keys = [k for k, _ in read_scp(args.key_file, allow_empty_value=True)] if args.key_file else list(texts)
    missing = [k for k in keys if k not in texts]
    if missing:
        raise EbmError(f"{len(missing)} keys of {args.key_file} have no text in {args.text}, e.g. {missing[:3]}")
    wavs = dict(read_scp(args.wav_scp)) if args.wav_scp else {}
    if "teacher_forced" in modes and not all(k in wavs for k in keys):
        raise EbmError("teacher_forced decoding needs --wav_scp with every key")

    device = "cuda" if args.ngpu > 0 else "cpu"
    decode = decode_batched if args.batch_size > 1 else decode_one_at_a_time
    decode(args, modes, decode_conf, texts, keys, wavs, device)


if __name__ == "__main__":
    run(main)
