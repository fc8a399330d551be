"""Score generated waveforms against the references, one line per utterance (stage 7).

Metrics and their definitions: :mod:`ebm.metrics` (MCD, log-F0 RMSE, voicing decision error, gross pitch error,
F0 frame error; the vocoder-free mel distance, the share of MCD from the reference's silent frames, DistillMOS'
predicted MOS). Several systems are scored in one pass (``--system WAV_SCP OUTPUT [MEL_SCP]`` repeated): each
reference is analysed once, which is most of the cost when many Langevin settings are compared. ``MEL_SCP`` is the
system's log mel as its model output it (a decode's ``denorm/feats.scp``), compared with the reference's mel at the
recipe's feature settings (``--fs --n_fft ...``); ``reference`` for the analysis-synthesis row, whose mel is the
reference's (distance 0); without it the mel distance is NaN. Writes one tab-separated table with a header per
system, through a temporary name, and beside it (``OUTPUT`` with ``.f0.tsv`` for ``.tsv``) the system's F0 carried
onto the reference's frames, from which the results compare pitch on common voiced frames without analysing
the signals again.
"""

import argparse
import logging
import math
import time
import warnings

import numpy as np

from ebm.audio import read_wav
from ebm.cli import EbmError, run, setup_logging
from ebm.io import open_feats_scp, read_scp, write_atomic
from ebm.scoring import COLUMNS, REFERENCE_MEL, add_f0_range, f0_range, f0_tracks_path, write_f0_tracks
from ebm.vocoder import FeatureSettings


def get_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ref_wav_scp", required=True, help="the reference recordings (dump/raw/<set>/wav.scp)")
    p.add_argument("--system", nargs="+", action="append", required=True, metavar="WAV_SCP OUTPUT [MEL_SCP]",
                   help="a system's waveforms (vocode's wav.scp), its per-utterance table (TSV) and optionally its "
                        f"mels (a decode's denorm/feats.scp, or '{REFERENCE_MEL}'); repeatable")
    p.add_argument("--key_file", default=None, help="only these utterances (a job's share)")
    FeatureSettings.add_arguments(p)  # the reference's mel for the mel distance; --n_shift frames every metric
    add_f0_range(p)
    return p


def check_systems(systems):
    for spec in systems:
        if len(spec) not in (2, 3):
            raise EbmError(f"--system {' '.join(spec)}: give WAV_SCP OUTPUT [MEL_SCP] (2 or 3 values)")
        f0_tracks_path(spec[1])  # OUTPUT names its F0 tracks too: refuse a name without .tsv before any work
    return [(spec[0], spec[1], spec[2] if len(spec) == 3 else None) for spec in systems]


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    from ebm.metrics import analyse, f0_track_pair, mel_distance, predicted_mos, score_analyses

    f0_floor, f0_ceil = f0_range(args)
    opts = dict(n_shift=args.n_shift, f0_floor=f0_floor, f0_ceil=f0_ceil)
    settings = FeatureSettings.from_args(args)
    refs = dict(read_scp(args.ref_wav_scp))
    systems = [(dict(read_scp(scp)), scp, out, mel) for scp, out, mel in check_systems(args.system)]
    keys = [k for k, _ in read_scp(args.key_file, allow_empty_value=True)] if args.key_file else sorted(refs)
    for gens, scp, _, _ in systems:
        missing = [k for k in keys if k not in refs or k not in gens]
        if missing:
            raise EbmError(f"{len(missing)} utterances lack a reference in {args.ref_wav_scp} or a waveform in "
                           f"{scp}, e.g. {missing[:3]}; rerun the vocoding of this system")
    mels = {}
    for _, _, _, mel in systems:
        if mel not in (None, REFERENCE_MEL) and mel not in mels:
            mels[mel] = open_feats_scp(mel)
            present = set(mels[mel].keys())  # membership by keys(): an npy reader would load each file
            missing = [k for k in keys if k not in present]
            if missing:
                raise EbmError(f"{len(missing)} utterances lack a mel in {mel}, e.g. {missing[:3]}; rerun the "
                               "decoding of this system")
    rows = [[] for _ in systems]
    tracks = [[] for _ in systems]
    t0, mos_s, audio_s = time.perf_counter(), 0.0, 0.0
    for i, key in enumerate(keys, 1):
        ref, fs = read_wav(refs[key], key, "reference wav", fix="rerun stage 1")
        try:
            ref_a = analyse(ref, fs, what="reference wav", **opts)
            ref_mel = None
            for n, (gens, _, _, mel) in enumerate(systems):
                gen, fs_gen = read_wav(gens[key], key, "generated wav", fix="rerun the vocoding of this system")
                if fs_gen != fs:
                    raise EbmError(f"reference at {fs} Hz but {gens[key]} at {fs_gen} Hz; vocode at the recipe's fs")
                gen_a = analyse(gen, fs, what=f"generated wav {gens[key]}", **opts)
                s = score_analyses(ref_a, gen_a)
                tracks[n].append((key, *f0_track_pair(ref_a, gen_a)))
                if mel is None:
                    s["mel_distance"] = float("nan")
                elif mel == REFERENCE_MEL:
                    s["mel_distance"] = 0.0  # the reference's own mel
                else:
                    if ref_mel is None:
                        if fs != settings.fs:
                            raise EbmError(f"{refs[key]} is at {fs} Hz but the features are at --fs {settings.fs}; "
                                           "score with the recipe's feature settings")
                        ref_mel = settings.logmel(ref)
                    try:
                        s["mel_distance"] = mel_distance(ref_mel, mels[mel][key])
                    except EbmError as e:
                        raise EbmError(f"{mel}: {e}") from None
                t = time.perf_counter()
                s["predicted_mos"] = predicted_mos(gen, fs)
                mos_s, audio_s = mos_s + time.perf_counter() - t, audio_s + len(gen) / fs
                rows[n].append((key, *[float(s[c]) for c in COLUMNS]))
        except EbmError as e:
            raise EbmError(f"{key}: {e}") from None
        if i % 10 == 0 or i == len(keys):
            logging.info(f"{i}/{len(keys)} utterances scored for {len(systems)} systems "
                         f"({time.perf_counter() - t0:.1f} s, of which predicted MOS {mos_s:.1f} s: "
                         f"{mos_s / max(audio_s, 1e-9):.3f} s per second of audio)")
    for (_, scp, out, _), sys_rows, sys_tracks in zip(systems, rows, tracks):
        text = "utt\t" + "\t".join(COLUMNS) + "\n"
        text += "".join(k + "\t" + "\t".join(f"{v:.5f}" for v in vals) + "\n" for k, *vals in sys_rows)
        write_f0_tracks(f0_tracks_path(out), sys_tracks)
        write_atomic(out, text)
        with warnings.catch_warnings():  # a column may be NaN throughout (no mels given, nothing voiced in both)
            warnings.simplefilter("ignore", RuntimeWarning)
            means = {c: np.nanmean([r[j + 1] for r in sys_rows]) if sys_rows else math.nan
                     for j, c in enumerate(COLUMNS)}
        logging.info(f"{scp}: " + " ".join(f"{c}={v:.4f}" for c, v in means.items() if not math.isnan(v)))


if __name__ == "__main__":
    run(main)
