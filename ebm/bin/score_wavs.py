"""Score generated waveforms against the references, one line per utterance (stage 7).

Metrics and their definitions: :mod:`ebm.metrics` (MCD, log-F0 RMSE, voicing decision error, gross pitch error,
F0 frame error). Several systems are scored in one pass (``--system WAV_SCP OUTPUT`` repeated): each reference is
analysed once, which is most of the cost when many Langevin settings are compared. Writes one tab-separated table
with a header per system, through a temporary name.
"""

import argparse
import logging
import math
import time

import numpy as np
import soundfile as sf

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, write_atomic

COLUMNS = ("mcd", "log_f0_rmse", "vde", "gpe", "ffe")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ref_wav_scp", required=True, help="the reference recordings (dump/raw/<set>/wav.scp)")
    p.add_argument("--system", nargs=2, action="append", required=True, metavar=("WAV_SCP", "OUTPUT"),
                   help="a system's waveforms (vocode's wav.scp) and its per-utterance table (TSV); repeatable")
    p.add_argument("--key_file", default=None, help="only these utterances (a job's share)")
    p.add_argument("--n_shift", type=int, default=256)
    add_f0_range(p)
    return p


def add_f0_range(p):
    """The pitch tracker's search range, named as in ESPnet's ``evaluate_f0.py``: set it to the speaker's."""
    p.add_argument("--f0min", type=float, default=40.0, help="lowest F0 WORLD harvest may find (Hz)")
    p.add_argument("--f0max", type=float, default=800.0, help="highest F0 WORLD harvest may find (Hz)")


def f0_range(args):
    """``(f0min, f0max)`` checked: octave errors of the tracker decide log-F0 RMSE, so a bad range must not pass."""
    if not 0 < args.f0min < args.f0max:
        raise EbmError(f"the F0 search range --f0min {args.f0min:g} --f0max {args.f0max:g} is empty or negative; "
                       "give 0 < f0min < f0max in Hz (e.g. 40 and 800, or the speaker's range)")
    return args.f0min, args.f0max


def load(key, path, what):
    try:
        wav, fs = sf.read(path, dtype="float64")
    except Exception as e:
        raise EbmError(f"{key}: cannot read the {what} wav {path} ({e})") from None
    if wav.ndim != 1:
        raise EbmError(f"{key}: the {what} wav {path} is not mono")
    return wav, fs


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    from ebm.metrics import analyse, score_analyses

    f0_floor, f0_ceil = f0_range(args)
    opts = dict(n_shift=args.n_shift, f0_floor=f0_floor, f0_ceil=f0_ceil)
    refs = dict(read_scp(args.ref_wav_scp))
    systems = [(dict(read_scp(scp)), scp, out) for scp, out in args.system]
    keys = [k for k, _ in read_scp(args.key_file, allow_empty_value=True)] if args.key_file else sorted(refs)
    for gens, scp, _ in systems:
        missing = [k for k in keys if k not in refs or k not in gens]
        if missing:
            raise EbmError(f"{len(missing)} utterances lack a reference in {args.ref_wav_scp} or a waveform in "
                           f"{scp}, e.g. {missing[:3]}; rerun the vocoding of this system")
    rows = [[] for _ in systems]
    t0 = time.perf_counter()
    for i, key in enumerate(keys, 1):
        ref, fs = load(key, refs[key], "reference")
        try:
            ref_a = analyse(ref, fs, what="reference wav", **opts)
            for n, (gens, _, _) in enumerate(systems):
                gen, fs_gen = load(key, gens[key], "generated")
                if fs_gen != fs:
                    raise EbmError(f"reference at {fs} Hz but {gens[key]} at {fs_gen} Hz; vocode at the recipe's fs")
                s = score_analyses(ref_a, analyse(gen, fs, what=f"generated wav {gens[key]}", **opts))
                rows[n].append((key, *[float(s[c]) for c in COLUMNS]))
        except EbmError as e:
            raise EbmError(f"{key}: {e}") from None
        if i % 10 == 0 or i == len(keys):
            logging.info(f"{i}/{len(keys)} utterances scored for {len(systems)} systems "
                         f"({time.perf_counter() - t0:.1f} s)")
    for (_, scp, out), sys_rows in zip(systems, rows):
        text = "utt\t" + "\t".join(COLUMNS) + "\n"
        text += "".join(k + "\t" + "\t".join(f"{v:.5f}" for v in vals) + "\n" for k, *vals in sys_rows)
        write_atomic(out, text)
        means = {c: np.nanmean([r[j + 1] for r in sys_rows]) for j, c in enumerate(COLUMNS)}
        logging.info(f"{scp}: " + " ".join(f"{c}={v:.4f}" for c, v in means.items() if not math.isnan(v)))


def read_scores(path):
    """``{utt: {metric: value}}`` from a table written by this script."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        return {parts[0]: {c: float(v) for c, v in zip(header[1:], parts[1:])}
                for parts in (line.rstrip("\n").split("\t") for line in f if line.strip())}


if __name__ == "__main__":
    run(main)
