"""Refuse an imported Tacotron 2 whose tokens or features differ from the recipe's.

The baseline's outputs become the EBM's negatives and initial hypotheses, so they must live in the recipe's
feature space and read the recipe's tokens. Every setting that differs is named, with both values.
"""

import argparse
import logging
import os

import yaml

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp


def get_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model_file", required=True)
    p.add_argument("--config", required=True, help="the model's config.yaml, as ESPnet wrote it")
    p.add_argument("--token_list", required=True, help="the recipe's tokens.txt")
    p.add_argument("--token_type", required=True)
    p.add_argument("--cleaner", required=True)
    p.add_argument("--g2p", required=True)
    for name in ["fs", "n_fft", "n_shift", "win_length", "n_mels", "fmin", "fmax"]:
        p.add_argument(f"--{name}", type=int, required=True)
    return p


def none_if_none(value):
    return None if value in (None, "none", "None") else value


def mismatches(config, args, tokens):
    """Return ``[(setting, baseline value, recipe value), ...]`` for every setting that differs."""
    out = []
    if config.get("tts") != "tacotron2":
        out.append(("tts", config.get("tts"), "tacotron2"))
    for key in ["token_type", "cleaner", "g2p"]:
        if none_if_none(config.get(key)) != none_if_none(getattr(args, key)):
            out.append((key, config.get(key), getattr(args, key)))
    base_tokens = config.get("token_list") or []
    if base_tokens != tokens:
        diff = next((i for i, (a, b) in enumerate(zip(base_tokens, tokens)) if a != b), min(len(base_tokens), len(tokens)))
        out.append(("token_list", f"{len(base_tokens)} tokens, #{diff} = {base_tokens[diff:diff + 1]}",
                    f"{len(tokens)} tokens, #{diff} = {tokens[diff:diff + 1]}"))
    if config.get("feats_extract") != "fbank":
        out.append(("feats_extract", config.get("feats_extract"), "fbank"))
    conf = config.get("feats_extract_conf") or {}
    recipe = {"fs": args.fs, "n_fft": args.n_fft, "hop_length": args.n_shift, "win_length": args.win_length,
              "n_mels": args.n_mels, "fmin": args.fmin, "fmax": args.fmax}
    for key, want in recipe.items():
        have = conf.get(key, args.n_fft if key == "win_length" else None)
        if have is None or float(have) != float(want):
            out.append((f"feats_extract_conf.{key}", have, want))
    if config.get("normalize") != "global_mvn":
        out.append(("normalize", config.get("normalize"), "global_mvn"))
    return out


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    for path in [args.model_file, args.config]:
        if not os.path.isfile(path):
            raise EbmError(f"{path} does not exist; give the baseline's .pth and config.yaml")
    with open(args.config) as f:
        config = yaml.safe_load(f)
    tokens = [t for t, _ in read_scp(args.token_list, allow_empty_value=True)]
    bad = mismatches(config, args, tokens)
    if bad:
        lines = "\n  ".join(f"{k}: baseline {b!r}, recipe {r!r}" for k, b, r in bad)
        raise EbmError(f"the baseline {args.model_file} does not match this recipe:\n  {lines}\n"
                       "Train the baseline in this recipe (stage 3 without --baseline_model_file), or run the "
                       "recipe with the baseline's settings.")
    import torch

    try:
        state = torch.load(args.model_file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EbmError(f"{args.model_file} cannot be loaded as an ESPnet model ({e})") from None
    embed = state.get("tts.enc.embed.weight")
    if embed is None or embed.shape[0] != len(tokens):
        raise EbmError(f"{args.model_file} is not a Tacotron 2 over {len(tokens)} tokens "
                       f"(tts.enc.embed.weight: {None if embed is None else tuple(embed.shape)})")
    logging.info(f"{args.model_file} matches the recipe's tokens and features")


if __name__ == "__main__":
    run(main)
