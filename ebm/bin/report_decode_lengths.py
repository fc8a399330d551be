"""List free-running decodes whose length went wrong.

A decode that stops at Tacotron 2's maximum length never predicted its end; one far off the reference's length
has probably lost its alignment. Both make poor initial hypotheses for Langevin refinement and unfair
negatives, so they are listed (one line each, with both lengths) and counted in the log.
"""

import argparse
import logging
import os

import yaml

from ebm.cli import run, setup_logging
from ebm.io import read_scp, write_atomic


def get_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--text", required=True)
    p.add_argument("--utt2num_samples", required=True)
    p.add_argument("--n_shift", type=int, required=True)
    p.add_argument("--decode", nargs=2, action="append", required=True, metavar=("MODE", "DIR"),
                   help="a decode of the set (repeatable): its mode (teacher_forced: lengths follow the reference, "
                        "only timed) and its dir, which holds speech_shape/speech_shape and rtf; the report is "
                        "written to DIR/length_report.txt")
    p.add_argument("--train_config", required=True, help="the baseline's config.yaml (tokens)")
    p.add_argument("--inference_config", default=None, help="decoding options (maxlenratio)")
    p.add_argument("--maxlenratio", type=float, default=None, help="default: the inference config's, else 10")
    p.add_argument("--tolerance", type=float, default=0.2)
    p.add_argument("--fs", type=int, default=None, help="log the real-time factor from each decode's rtf file")
    return p


def report(mode, decode_dir, texts, samples, maxlens, args):
    """Write decode_dir/length_report.txt for one decode of the set and log its counts and speed."""
    decoded = {k: int(v.split(",")[0]) for k, v in read_scp(os.path.join(decode_dir, "speech_shape/speech_shape"))}
    output = os.path.join(decode_dir, "length_report.txt")
    lines, n_max, n_off, n_missing, n = [], 0, 0, 0, 0
    for utt in texts:
        if utt not in decoded:
            lines.append(f"{utt} missing: no decode\n")
            n_missing += 1
            continue
        n += 1
        if mode == "teacher_forced":
            continue
        ref = int(samples[utt]) // args.n_shift + 1  # LogMelFbank frames (centred STFT)
        hyp = decoded[utt]
        ratio = hyp / ref
        if hyp >= maxlens[utt]:
            n_max += 1
            lines.append(f"{utt} max_length hyp={hyp} ref={ref} ratio={ratio:.2f}\n")
        elif abs(ratio - 1) > args.tolerance:
            n_off += 1
            lines.append(f"{utt} {'too_short' if ratio < 1 else 'too_long'} hyp={hyp} ref={ref} ratio={ratio:.2f}\n")
    write_atomic(output, "".join(lines))
    ok = n - n_max - n_off
    logging.info(f"{mode}: {ok}/{n} decodes ({100 * ok / max(n, 1):.1f}%) within {100 * args.tolerance:.0f}% of "
                 f"the reference length; {n_max} hit the maximum length, {n_off} off by more"
                 + (f", {n_missing} texts not decoded" if n_missing else "") + f" -> {output}")
    rtf = os.path.join(decode_dir, "rtf")
    if args.fs and os.path.exists(rtf):
        times = [v.split() for _, v in read_scp(rtf)]
        seconds = sum(float(t) for t, _ in times)
        audio = sum(int(f) for _, f in times) * args.n_shift / args.fs
        logging.info(f"{mode}: decoding {seconds / max(len(times), 1):.3f} s per utterance, RTF "
                     f"{seconds / audio:.4f} (decode seconds / seconds of speech, no vocoder)")


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    with open(args.train_config) as f:
        config = yaml.safe_load(f)
    maxlenratio = args.maxlenratio
    if maxlenratio is None and args.inference_config:
        with open(args.inference_config) as f:
            maxlenratio = (yaml.safe_load(f) or {}).get("maxlenratio")
    maxlenratio = 10.0 if maxlenratio is None else float(maxlenratio)

    # ESPnet's tokenizer is slow to import and build: built once for all decodes of the set
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.cleaner import TextCleaner

    g2p = config.get("g2p")
    tokenizer = build_tokenizer(token_type=config["token_type"], g2p_type=None if g2p in (None, "none") else g2p)
    cleaner = TextCleaner(config.get("cleaner"))
    texts = dict(read_scp(args.text))
    samples = dict(read_scp(args.utt2num_samples))
    # ESPnet's maximum length: (tokens + <eos>) x maxlenratio frames
    maxlens = {utt: int((len(tokenizer.text2tokens(cleaner(text))) + 1) * maxlenratio) for utt, text in texts.items()}
    for mode, decode_dir in args.decode:
        report(mode, decode_dir, texts, samples, maxlens, args)


if __name__ == "__main__":
    run(main)
