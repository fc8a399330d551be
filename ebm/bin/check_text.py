"""Refuse transcripts that would silently train or decode the wrong thing.

Checked per utterance, all problems reported at once. On the raw transcript, before the cleaner
(:mod:`ebm.text_check`, the rule synthesis applies too): empty text, text with no letter or digit, and
characters outside the recipe's language that the cleaner would transliterate (allowed with
``--transliterate true``, and logged) or drop. After ESPnet's own cleaner and tokenizer, so that the check sees
exactly what training sees: text that is empty after cleaning; with the tacotron cleaner, characters it leaves
that are not English letters or punctuation (they would become tokens of their own); and, given
``--token_list``, tokens the list lacks (they would decode as ``<unk>``).
"""

import argparse
import logging
import string

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp
from ebm.text_check import describe, foreign_characters, transcript_problem

# What ESPnet's tacotron cleaner leaves for English: upper-cased ASCII letters, digits it failed to spell out
# are not expected, space and a little punctuation.
TACOTRON_CHARS = set(string.ascii_letters) | set(" !'\"(),-.:;?")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="+", help="Kaldi text files (utt-id transcript)")
    p.add_argument("--token_type", default="char", choices=["char", "phn", "word", "bpe"])
    p.add_argument("--cleaner", default="tacotron")
    p.add_argument("--g2p", default="none")
    p.add_argument("--token_list", default=None, help="tokens.txt: report tokens it does not contain")
    p.add_argument("--transliterate", choices=["true", "false"], default="false",
                   help="let the cleaner transliterate characters outside the recipe's language (logged)")
    p.add_argument("--max_report", type=int, default=20)
    return p


def check_file(path, cleaner, tokenizer, tokens, cleaner_name, transliterate=False):
    """Problems of one text file, one line each; with ``transliterate``, a warning lists what is transliterated."""
    problems, transliterated, utts = [], {}, []
    for utt, text in read_scp(path, allow_empty_value=True):
        problem = transcript_problem(text, cleaner_name, transliterate)
        if problem is not None:
            problems.append(f"{utt}: {problem} (edit the corpus, e.g. its metadata.csv: stage 1 rebuilds data/)")
            continue
        foreign = foreign_characters(text, cleaner_name)
        if foreign:
            transliterated.update(foreign)
            utts.append(utt)
        cleaned = cleaner(text) if cleaner is not None else text
        if not cleaned.strip():
            problems.append(f"{utt}: nothing is left of {text!r} after the {cleaner_name} cleaner; fix the text")
            continue
        if cleaner_name == "tacotron":
            bad = sorted({c for c in cleaned if c not in TACOTRON_CHARS})
            if bad:
                shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad)
                problems.append(f"{utt}: the tacotron cleaner cannot handle {shown} in {text!r}; "
                                "rewrite those characters in the transcript")
                continue
        toks = tokenizer.text2tokens(cleaned)
        if not toks:
            problems.append(f"{utt}: no tokens from {text!r}; fix the text or the --g2p setting")
        elif tokens is not None:
            oov = sorted(set(toks) - tokens)
            if oov:
                problems.append(f"{utt}: tokens {oov} are not in the token list; they occur only outside the "
                                "training set: fix the transcript or add such text to the training set")
    if transliterated:
        more = f" ... ({len(utts)})" if len(utts) > 10 else ""
        logging.warning(f"{path}: transliterating {len(transliterated)} character(s) outside the recipe's language "
                        f"(--transliterate true): {describe(dict(sorted(transliterated.items())))}; "
                        f"in {' '.join(utts[:10])}{more}")
    return problems


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.cleaner import TextCleaner

    cleaner = TextCleaner(args.cleaner) if args.cleaner not in (None, "none") else None
    tokenizer = build_tokenizer(token_type=args.token_type, g2p_type=None if args.g2p == "none" else args.g2p)
    tokens = None
    if args.token_list is not None:
        with open(args.token_list, encoding="utf-8") as f:  # one token a line; g2p_en's word boundary is " "
            tokens = {line.rstrip("\n") for line in f if line != "\n"}
    problems = []
    for path in args.text:
        problems += [f"{path}: {p}" for p in check_file(path, cleaner, tokenizer, tokens, args.cleaner,
                                                        args.transliterate == "true")]
    if problems:
        shown = "\n  ".join(problems[: args.max_report])
        more = f"\n  ... and {len(problems) - args.max_report} more" if len(problems) > args.max_report else ""
        raise EbmError(f"{len(problems)} bad transcripts:\n  {shown}{more}")
    logging.info(f"transcripts OK: {' '.join(args.text)}")


if __name__ == "__main__":
    run(main)
