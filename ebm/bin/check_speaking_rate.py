"""Warn about utterances whose audio and transcript disagree in length, and about very long ones.

Every file can be a valid wav and every transcript valid text while the pair is wrong: audio cut short, a
transcript shifted by a line, two sentences in one clip. The speaking rate (letters of the cleaned transcript per
second of audio) of one speaker varies little, so such pairs stand out from the corpus's own distribution: an
utterance whose log rate is more than ``--threshold`` robust standard deviations (1.4826 x the median absolute
deviation) from the median is listed. Very long utterances (log duration that far above the median, and at
least twice the median) are listed too, with what they cost to decode: Tacotron 2's free-running decoding
(stages 4 and 6) stops only at the stop token or at ``maxlenratio`` frames per input token, and an utterance
beyond what the model learnt to end may run to that cap. These are warnings: the stage goes on, and the user
decides what to remove from the corpus.

Reads ``text`` and ``utt2num_samples`` of each data dir (stage 1's formatted sets).
"""

import argparse
import logging
import math
import os

import numpy as np

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, write_atomic

# ESPnet's Tacotron 2 default, used when no decode config is given.
DEFAULT_MAXLENRATIO = 10.0
# The spread below which a corpus is treated as uniform (log units: 10 %), so that a corpus of near-identical
# utterances does not flag small differences.
MIN_SIGMA = 0.1
# An utterance is "very long" only if it is also this many times the median duration: in a corpus of similar
# lengths, a robust z-score alone would flag ordinary ones.
MIN_LONG_RATIO = 2.0


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dirs", nargs="+", help="data dirs with text and utt2num_samples (all sets of the corpus)")
    p.add_argument("--fs", type=int, required=True, help="sampling rate of utt2num_samples")
    p.add_argument("--n_shift", type=int, default=256, help="frame shift, for the decode cost in frames")
    p.add_argument("--cleaner", default="tacotron", help="ESPnet cleaner: letters are counted after it")
    p.add_argument("--inference_config", default=None, help="Tacotron 2 decode YAML: its maxlenratio is the cap")
    p.add_argument("--threshold", type=float, default=4.0, help="robust z-score beyond which an utterance is listed")
    p.add_argument("--report", default=None, help="write every listed utterance here (one per line)")
    p.add_argument("--max_report", type=int, default=20, help="listed in the log before the summary")
    return p


def read_maxlenratio(path):
    if not path:
        return DEFAULT_MAXLENRATIO
    import yaml

    if not os.path.isfile(path):
        raise EbmError(f"{path} does not exist (--inference_config)")
    with open(path, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    value = conf.get("maxlenratio", DEFAULT_MAXLENRATIO)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EbmError(f"{path}: maxlenratio must be a number, got {value!r}") from None


def letter_counter(cleaner_name):
    """Letters and digits of the text as the model reads it: after the cleaner, which spells out numbers."""
    cleaner = None
    if cleaner_name not in (None, "", "none"):
        from espnet2.text.cleaner import TextCleaner

        cleaner = TextCleaner(cleaner_name)

    def count(text):
        cleaned = cleaner(text) if cleaner is not None else text
        return sum(c.isalnum() for c in cleaned), len(cleaned)

    return count


def robust_z(x):
    """(x - median) / (1.4826 MAD), the MAD floored at MIN_SIGMA: a z-score that outliers themselves do not skew."""
    med = float(np.median(x))
    sigma = max(1.4826 * float(np.median(np.abs(x - med))), MIN_SIGMA)
    return (x - med) / sigma, med


def load(data_dirs, count):
    rows = []  # (set, utt, letters, chars, samples)
    for d in data_dirs:
        text = dict(read_scp(os.path.join(d, "text"), allow_empty_value=True))
        samples = read_scp(os.path.join(d, "utt2num_samples"))
        for utt, n in samples:
            if utt not in text:
                raise EbmError(f"{d}: {utt} is in utt2num_samples but not in text; rerun stage 1")
            letters, chars = count(text[utt])
            rows.append((os.path.basename(os.path.normpath(d)), utt, letters, chars, int(n)))
    if not rows:
        raise EbmError(f"no utterances in {' '.join(data_dirs)}")
    return rows


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    maxlenratio = read_maxlenratio(args.inference_config)
    rows = load(args.data_dirs, letter_counter(args.cleaner))
    seconds = np.array([r[4] / args.fs for r in rows])
    rate = np.array([max(r[2], 1) for r in rows]) / np.maximum(seconds, 1e-3)
    z_rate, med_rate = robust_z(np.log(rate))
    z_dur, med_dur = robust_z(np.log(seconds))
    med_rate, med_dur = math.exp(med_rate), math.exp(med_dur)
    listed = []
    for i, (dset, utt, letters, chars, n) in enumerate(rows):
        where = f"{dset}/{utt}"
        if abs(z_rate[i]) > args.threshold:
            kind = "fast: audio cut short or text too long" if z_rate[i] > 0 else "slow: text missing or long silence"
            listed.append(f"{where}: {rate[i]:.1f} letters/s against the corpus's median {med_rate:.1f} ({kind}; "
                          f"{letters} letters in {seconds[i]:.2f} s): check that the audio says the transcript")
        if z_dur[i] > args.threshold and seconds[i] > MIN_LONG_RATIO * med_dur:
            frames = n // args.n_shift + 1
            tokens = chars + 1  # characters and <sos/eos>; with phonemes the count differs, hence "about"
            cap = int(tokens * maxlenratio)
            listed.append(
                f"{where}: very long, {seconds[i]:.1f} s ({frames} frames; median utterance {med_dur:.1f} s): decoding "
                f"and scoring it costs about {seconds[i] / med_dur:.0f}x the median, and free-running decoding may run "
                f"to the length cap, maxlenratio {maxlenratio:g} x about {tokens} tokens = {cap} frames "
                f"({cap * args.n_shift / args.fs:.1f} s); remove it from the corpus or split it if that is not wanted")
    logging.info(f"speaking rate over {len(rows)} utterances of {' '.join(args.data_dirs)}: median "
                 f"{med_rate:.1f} letters/s, median duration {med_dur:.2f} s; {len(listed)} outlier(s) "
                 f"(robust z > {args.threshold:g})")
    for line in listed[: args.max_report]:
        logging.warning(line)
    if len(listed) > args.max_report:
        logging.warning(f"... and {len(listed) - args.max_report} more"
                        + (f" (all in {args.report})" if args.report else ""))
    if args.report:
        write_atomic(args.report, "".join(line + "\n" for line in listed))


if __name__ == "__main__":
    run(main)
