"""Decode a key list with ESPnet's Tacotron 2 in several modes at once, in ESPnet's decode layout.

Stage 4 needs each utterance decoded up to three ways: teacher-forced (the model-based negatives, reference
length), free-running with a fixed seed (the initial hypotheses and the baseline's own output), and extra
stochastic free-running samples (prenet dropout stays on at inference, so each seed gives another negative).
This uses ESPnet's inference class, ``Text2Speech``, but loads ESPnet once for all modes and plots attention for
only a few utterances: ``espnet2.bin.tts_inference`` plots every one, which costs more than decoding on a CPU.

Writes, per mode, ``OUTPUT_DIR/<mode>/{norm,denorm}/feats.scp`` (+ .npy), ``speech_shape/speech_shape``,
``att_ws/<key>.png`` for the first ``--num_att_plots`` keys, and ``rtf`` (seconds and frames per utterance).
"""

import argparse
import contextlib
import io
import logging
import os
import time

import numpy as np
import soundfile as sf
import yaml

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp

DECODE_KEYS = ("threshold", "minlenratio", "maxlenratio", "use_att_constraint", "backward_window",
               "forward_window")


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


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    modes = [m for m in args.modes.split(",") if m]
    opts = {m: mode_options(m, args.seed) for m in modes}
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

    import torch

    with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
        from espnet2.bin.tts_inference import Text2Speech
        from espnet2.fileio.npy_scp import NpyScpWriter

    device = "cuda" if args.ngpu > 0 else "cpu"
    for mode in modes:
        t2s = Text2Speech(args.train_config, args.model_file, device=device, always_fix_seed=True,
                          **decode_conf, **opts[mode])
        out = os.path.join(args.output_dir, mode)
        for sub in ["norm", "denorm", "speech_shape", "att_ws"]:
            os.makedirs(os.path.join(out, sub), exist_ok=True)
        rtf_lines, shape_lines, t_mode = [], [], time.perf_counter()
        with NpyScpWriter(f"{out}/norm", f"{out}/norm/feats.scp") as norm, \
                NpyScpWriter(f"{out}/denorm", f"{out}/denorm/feats.scp") as denorm:
            for i, key in enumerate(keys):
                speech = None
                if mode == "teacher_forced":
                    speech, _ = sf.read(wavs[key], dtype="float32")
                    speech = torch.from_numpy(speech)
                t0 = time.perf_counter()
                with torch.no_grad():
                    result = t2s(texts[key], speech=speech)
                seconds = time.perf_counter() - t0
                feat = result["feat_gen"].cpu().numpy()
                norm[key] = feat
                denorm[key] = result["feat_gen_denorm"].cpu().numpy()
                shape_lines.append(f"{key} {feat.shape[0]},{feat.shape[1]}\n")
                rtf_lines.append(f"{key} {seconds:.4f} {feat.shape[0]}\n")
                if i < args.num_att_plots and result.get("att_w") is not None:
                    plot_attention(result["att_w"], f"{out}/att_ws/{key}.png")
        with open(f"{out}/speech_shape/speech_shape", "w") as f:
            f.writelines(shape_lines)
        with open(f"{out}/rtf", "w") as f:
            f.writelines(rtf_lines)
        frames = sum(int(line.split()[2]) for line in rtf_lines)
        logging.info(f"{mode}: {len(keys)} utterances, {frames} frames in {time.perf_counter() - t_mode:.1f} s "
                     f"-> {out}")


if __name__ == "__main__":
    run(main)
