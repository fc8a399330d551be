"""Refuse a baseline Tacotron 2 whose tokens, text front end or features differ from the recipe's.

The baseline's outputs become the EBM's negatives and initial hypotheses, so they must live in the recipe's
feature space and read the recipe's tokens. Every setting that differs is named, with both values. Stage 3 runs
this on an imported model; stage 2 also gives ``--text``: every transcript the recipe will read must tokenise
within the model's token list (the recipe cannot add tokens to a trained model), and each one that does not is
named. The logic is ebm.baseline_import's and ebm.text_frontend's.
"""

import argparse
import logging
import os

from ebm.baseline_import import (FRONTEND_KEYS, check_weights, feature_mismatches, frontend, load_weights,
                                 model_tokens, read_config, refuse_mismatches)
from ebm.cli import EbmError, run, setup_logging
from ebm.text_frontend import Frontend, tokens_outside
from ebm.vocoder import FeatureSettings


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_file", required=True)
    p.add_argument("--config", required=True, help="the model's config.yaml, as ESPnet wrote it")
    p.add_argument("--token_list", required=True, help="the recipe's tokens.txt")
    p.add_argument("--token_type", required=True)
    p.add_argument("--cleaner", required=True)
    p.add_argument("--g2p", required=True)
    p.add_argument("--text", nargs="*", default=[], help="Kaldi text files that must tokenise within the list")
    p.add_argument("--max_report", type=int, default=20)
    FeatureSettings.add_arguments(p)
    return p


def token_list_mismatch(base_tokens, tokens):
    """``(setting, baseline, recipe)`` naming the first position where the two lists differ, or None."""
    if base_tokens == tokens:
        return None
    i = next((i for i, (a, b) in enumerate(zip(base_tokens, tokens)) if a != b), min(len(base_tokens), len(tokens)))
    return ("token_list", f"{len(base_tokens)} tokens, #{i} = {base_tokens[i:i + 1]}",
            f"{len(tokens)} tokens, #{i} = {tokens[i:i + 1]}")


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    config = read_config(args.config)
    if not os.path.isfile(args.token_list):
        raise EbmError(f"{args.token_list} does not exist: run stage 2")
    with open(args.token_list, encoding="utf-8") as f:  # one token a line; g2p_en's word boundary is " " itself
        tokens = [line.rstrip("\n") for line in f]
    bad = []
    if config.get("tts") != "tacotron2":
        bad.append(("tts", config.get("tts"), "tacotron2"))
    for key, value in zip(FRONTEND_KEYS, frontend(config, args.config)):
        if value != (getattr(args, key) or "none"):
            bad.append((key, value, getattr(args, key)))
    base_tokens = model_tokens(config, args.config)
    bad += [m for m in [token_list_mismatch(base_tokens, tokens)] if m]
    bad += feature_mismatches(config, FeatureSettings.from_args(args))
    refuse_mismatches(args.model_file, bad, "Run stage 2 with this --baseline_model_file (the recipe then adopts "
                      "the model's tokens and text front end) and the model's feature settings, or train the "
                      "baseline in this recipe (stage 3 without --baseline_model_file).")
    check_weights(load_weights(args.model_file), args.model_file, tokens)
    if args.text:
        problems = tokens_outside(args.text, tokens, Frontend(args.token_type, args.cleaner, args.g2p),
                                  what=f"the token list of the imported model {args.model_file}")
        if problems:
            shown = "\n  ".join(problems[: args.max_report])
            more = f"\n  ... and {len(problems) - args.max_report} more" if len(problems) > args.max_report else ""
            raise EbmError(f"{len(problems)} transcripts do not tokenise within the imported model's "
                           f"{len(tokens)} tokens (a trained model cannot learn new ones):\n  {shown}{more}")
    logging.info(f"{args.model_file} matches the recipe's tokens and features"
                 + (f"; {len(args.text)} transcript files tokenise within its list" if args.text else ""))


if __name__ == "__main__":
    run(main)
