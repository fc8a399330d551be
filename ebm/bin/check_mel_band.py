"""Warn when the mel band starts above the speaker's voice (stage 2).

A log mel whose lowest filter peaks above most of the speaker's fundamentals keeps only a faint trace of F0.
Every mel-to-waveform vocoder then rebuilds weakly periodic audio: on mini_espeak's eSpeak voice (median F0
about 100 Hz) with ``--fmin 80`` (first filter peak 116 Hz), Griffin-Lim analysis-synthesis of the *recordings*
scored FFE 0.47 on dev, against 0.15 with ``--fmin 40``. Pitch metrics are then bounded by the vocoder, and a
mel closer to the reference can score worse FFE than a blurred one. The check tracks F0 (WORLD harvest, the
metric's tracker) on a spread of training utterances and compares the median voiced F0 with the first filter's
peak. It warns rather than fails: features are the user's choice, and changing them means retraining everything.
"""

import argparse
import logging

import numpy as np

from ebm.audio import read_wav
from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp
from ebm.metrics import f0
from ebm.scoring import add_f0_range, f0_range
from ebm.vocoder import FeatureSettings


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wav_scp", required=True, help="the training set's wav.scp (dump/raw/<train_set>/wav.scp)")
    p.add_argument("--num_utts", type=int, default=20, help="utterances tracked, spread over the sorted keys")
    FeatureSettings.add_arguments(p)
    add_f0_range(p)
    return p


def first_filter_peak(settings):
    """Frequency (Hz) where the lowest mel filter of LogMelFbank reaches its maximum."""
    import librosa

    # n_mels + 2 edges: filter k rises from edge k to its peak at edge k + 1 (librosa's, hence ESPnet's, layout)
    edges = librosa.mel_frequencies(settings.n_mels + 2, fmin=settings.fmin, fmax=settings.fmax)
    return float(edges[1])


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    settings = FeatureSettings.from_args(args)
    f0min, f0max = f0_range(args)
    entries = sorted(read_scp(args.wav_scp))
    if not entries:
        raise EbmError(f"{args.wav_scp} is empty; rerun stage 1")
    picks = [entries[i] for i in np.unique(np.linspace(0, len(entries) - 1, max(1, args.num_utts)).astype(int))]
    voiced = []
    for key, path in picks:
        wav, fs = read_wav(path, key, "training wav", fs=settings.fs, fix="rerun stage 1")
        track = f0(wav, fs, n_shift=settings.n_shift, f0_floor=f0min, f0_ceil=f0max)
        voiced.append(track[track > 0])
    voiced = np.concatenate(voiced)
    peak = first_filter_peak(settings)
    if voiced.size == 0:
        logging.warning(f"no voiced frame in {len(picks)} utterances of {args.wav_scp} (F0 searched "
                        f"{f0min:g}-{f0max:g} Hz): check the audio and --f0min/--f0max")
        return
    median, low = np.median(voiced), np.percentile(voiced, 5)
    msg = (f"speaker F0 over {len(picks)} utterances of {args.wav_scp}: median {median:.0f} Hz, 5th percentile "
           f"{low:.0f} Hz; the mel band's first filter (--fmin {settings.fmin:g}, --n_mels {settings.n_mels}) "
           f"peaks at {peak:.0f} Hz")
    if median < peak:
        fix = max(0.0, round(low / 2, -1))  # about half the 5th percentile: the lowest voiced frames well inside
        logging.warning(f"{msg}: most fundamentals fall below it; vocoders rebuild weakly voiced audio from such "
                        f"mels, and every pitch metric is bounded by that. Rerun from stage 2 with --fmin {fix:g} "
                        "unless the features must match an existing model")
    else:
        logging.info(f"{msg}: the band covers the voice")


if __name__ == "__main__":
    run(main)
