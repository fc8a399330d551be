"""Turn mels into waveforms with the recipe's vocoder (stage 7).

Input is either a decode's denormalised ``feats.scp`` (npy or ark), or, for the analysis-synthesis row, the
reference ``wav.scp``: its mels are computed with ESPnet's LogMelFbank at the recipe's settings, so the row shows
what the vocoder alone costs. Writes ``OUTPUT_DIR/<key>.wav`` (each through a temporary name) and
``OUTPUT_DIR/wav.scp`` last, so a directory with a ``wav.scp`` is complete. ``--system`` (repeatable) vocodes
several systems' shares in one process, as stage 7 does per set: a process start and the vocoder's loading cost
more than a small set's Griffin-Lim.
"""

import argparse
import logging
import os
import time

import numpy as np
import soundfile as sf

from ebm.audio import read_mel
from ebm.cli import EbmError, run, setup_logging
from ebm.io import open_feats_scp, read_scp, write_atomic
from ebm.vocoder import FeatureSettings, load_vocoder


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--feats_scp", help="denormalised log mels (T, n_mels) per utterance")
    src.add_argument("--wav_scp", help="reference audio: analysis-synthesis through the vocoder")
    src.add_argument("--system", nargs=3, action="append", metavar=("KIND", "SCP", "OUTPUT_DIR"),
                     help="one system: KIND feats (SCP a feats.scp) or wav (SCP a wav.scp), written to OUTPUT_DIR; "
                          "repeatable, instead of --feats_scp/--wav_scp and --output_dir")
    p.add_argument("--key_file", default=None, help="only these utterances (a job's share)")
    p.add_argument("--output_dir", default=None, help="with --feats_scp or --wav_scp")
    p.add_argument("--vocoder_file", default="", help="parallel-wavegan .pkl (config.yml, stats.h5 beside); "
                   "empty: Griffin-Lim")
    p.add_argument("--griffin_lim_iters", type=int, default=32)
    FeatureSettings.add_arguments(p)
    p.add_argument("--ngpu", type=int, default=0)
    return p


def systems_of(args):
    """[(kind, scp, output_dir)] from --system, or from --feats_scp/--wav_scp with --output_dir."""
    if args.system:
        for kind, _, _ in args.system:
            if kind not in ("feats", "wav"):
                raise EbmError(f"--system {kind} ...: KIND is feats or wav")
        return [tuple(spec) for spec in args.system]
    if not args.output_dir:
        raise EbmError("--output_dir is required with --feats_scp or --wav_scp")
    return [("feats", args.feats_scp, args.output_dir) if args.feats_scp else ("wav", args.wav_scp, args.output_dir)]


def vocode_system(vocoder, settings, kind, scp, output_dir, key_file):
    """One system's share: its wavs and, last, its wav.scp."""
    if kind == "feats":
        reader = open_feats_scp(scp)
        sources = {k: scp for k in reader.keys()}
    else:
        reader = None
        sources = dict(read_scp(scp))
    keys = [k for k, _ in read_scp(key_file, allow_empty_value=True)] if key_file else sorted(sources)
    missing = [k for k in keys if k not in sources]
    if missing:
        raise EbmError(f"{len(missing)} utterances are not in {scp}, e.g. {missing[:3]}")

    os.makedirs(output_dir, exist_ok=True)
    lines, t0, audio_s = [], time.perf_counter(), 0.0
    for i, key in enumerate(keys, 1):
        wav = vocoder(read_mel(key, settings, reader, wav_path=None if reader else sources[key]))
        path = os.path.join(output_dir, f"{key}.wav")
        tmp = f"{path}.tmp.wav"
        peak = float(np.abs(wav).max()) if wav.size else 0.0
        if peak > 1.0:  # Griffin-Lim and GAN vocoders can overshoot; clipping would add distortion the metrics see
            wav = wav / peak * 0.99
        sf.write(tmp, wav, settings.fs, subtype="PCM_16")
        os.replace(tmp, path)
        lines.append(f"{key} {os.path.abspath(path)}\n")
        audio_s += len(wav) / settings.fs
        if i % 10 == 0 or i == len(keys):
            logging.info(f"{i}/{len(keys)} utterances vocoded ({time.perf_counter() - t0:.1f} s)")
    write_atomic(os.path.join(output_dir, "wav.scp"), "".join(sorted(lines)))
    logging.info(f"{vocoder.tag}: {len(keys)} wavs, {audio_s:.1f} s of audio in {time.perf_counter() - t0:.1f} s "
                 f"-> {output_dir}/wav.scp")


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    systems = systems_of(args)
    settings = FeatureSettings.from_args(args)
    vocoder = load_vocoder(args.vocoder_file, settings, args.griffin_lim_iters,
                           "cuda" if args.ngpu > 0 else "cpu")
    for kind, scp, output_dir in systems:
        vocode_system(vocoder, settings, kind, scp, output_dir, args.key_file)


if __name__ == "__main__":
    run(main)
