"""Check every wav of a ``wav.scp`` and bring it to the recipe's sampling rate.

Stage 1 runs this once per job on a split of ``wav.scp``. A wav already at ``--fs`` is referenced where it is (no
copy); one at another rate is resampled into ``--audio_dir`` or refused, per ``--on_rate_mismatch``. A WAV
whose data is shorter than its header promises (a copy cut short, with the header intact) is refused: libsndfile
reads what is there without complaint, and the utterance would train on a fragment of its sentence. Every bad
file is reported (not only the first), and nothing is written unless all are good, so a later stage never reads
a half-checked set. The hints send the user to the corpus, not to data/: stage 1 rebuilds data/ from it.
"""

import argparse
import logging
import math
import os
import shutil

import numpy as np
import soundfile as sf

from ebm.audio import read_wav
from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, write_atomic


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scp", help="input wav.scp (utt-id path)")
    p.add_argument("out_dir", help="writes wav.scp and utt2num_samples here")
    p.add_argument("--fs", type=int, required=True, help="the recipe's sampling rate")
    p.add_argument("--on_rate_mismatch", choices=["resample", "error"], default="resample")
    p.add_argument("--audio_dir", required=True, help="where resampled wavs go")
    p.add_argument("--max_report", type=int, default=20, help="bad files listed before the summary")
    return p


# Where a bad file is fixed: stage 1 rebuilds data/ from the corpus, so editing data/ would not last.
FIX_IN_CORPUS = "remove the utterance from the corpus (its line in metadata.csv; stage 1 rebuilds data/ from it)"

def load_mono(utt, path):
    """Read one wav as int16 mono (:func:`ebm.audio.read_wav`'s checks, the header's sample count included), or
    raise an EbmError that says what is wrong with it and to fix it in the corpus."""
    audio, rate = read_wav(path, utt, fix=FIX_IN_CORPUS)
    return np.round(audio.astype(np.float64) * 32768.0).clip(-32768, 32767).astype(np.int16), rate


def resample(audio, rate, fs):
    from scipy.signal import resample_poly

    g = math.gcd(rate, fs)
    y = resample_poly(audio.astype(np.float64), fs // g, rate // g)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    entries = read_scp(args.scp)
    out_scp, num_samples, errors, n_resampled = [], [], [], 0
    for utt, path in entries:
        try:
            audio, rate = load_mono(utt, path)
            if rate != args.fs:
                if args.on_rate_mismatch == "error":
                    raise EbmError(f"{utt}: {path} is at {rate} Hz, the recipe at {args.fs} Hz; "
                                   "resample it, or run with --on_rate_mismatch resample")
                audio = resample(audio, rate, args.fs)
                os.makedirs(args.audio_dir, exist_ok=True)
                path = os.path.abspath(os.path.join(args.audio_dir, f"{utt}.wav"))
                tmp = path + ".tmp.wav"
                sf.write(tmp, audio, args.fs, subtype="PCM_16")
                os.replace(tmp, path)
                n_resampled += 1
        except EbmError as e:
            errors.append(str(e))
            continue
        out_scp.append(f"{utt} {path}\n")
        num_samples.append(f"{utt} {len(audio)}\n")
    if errors:
        shown = "\n  ".join(errors[: args.max_report])
        more = f"\n  ... and {len(errors) - args.max_report} more" if len(errors) > args.max_report else ""
        raise EbmError(f"{len(errors)} of {len(entries)} utterances in {args.scp} have bad audio:\n  {shown}{more}")
    tmp_dir = args.out_dir + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    write_atomic(os.path.join(tmp_dir, "wav.scp"), "".join(out_scp))
    write_atomic(os.path.join(tmp_dir, "utt2num_samples"), "".join(num_samples))
    shutil.rmtree(args.out_dir, ignore_errors=True)
    os.replace(tmp_dir, args.out_dir)
    logging.info(f"{len(entries)} wavs checked, {n_resampled} resampled to {args.fs} Hz -> {args.out_dir}")


if __name__ == "__main__":
    run(main)
