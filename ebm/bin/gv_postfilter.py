"""A control for stage 7: Tacotron 2's decodes with every mel bin's deviations from its utterance mean scaled up.

Scaling the variance (a global-variance post-filter) undoes over-smoothing without looking at the text. On
Griffin-Lim audio it lowers MCD by itself, so an EBM's gain over Tacotron 2 only says something about the energy
once it exceeds this control's: the recipe scores a few scales and ``make_results`` compares each EBM with the one
chosen on dev. The scaling commutes with ESPnet's per-bin mean-variance normalisation, so the normalised and the
denormalised outputs are the same filter applied to each; the cost is negligible, and ``rtf`` is copied.
"""

import argparse
import logging
import os
import shutil

import numpy as np

from ebm.cli import EbmError, run, setup_logging
from ebm.io import open_feats_scp


def scale_variance(feats: np.ndarray, scale: float) -> np.ndarray:
    """``mean + scale * (feats - mean)``, the mean taken over the frames of this utterance for each bin."""
    feats = np.asarray(feats, dtype=np.float32)
    mean = feats.mean(axis=0, keepdims=True)
    return (mean + scale * (feats - mean)).astype(np.float32)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", required=True, help="a decode dir of one set: {norm,denorm}/feats.scp and rtf")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--scale", type=float, required=True, help="1 leaves the decodes as they are")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    if not args.scale > 0:
        raise EbmError(f"--scale {args.scale}: give a positive factor (e.g. 1.5; 1 is the identity)")
    out = os.path.normpath(args.output_dir)
    tmp = out + ".tmp"  # written in full, then swapped in: a half-made control never looks complete
    shutil.rmtree(tmp, ignore_errors=True)
    for kind in ("norm", "denorm"):
        src = os.path.join(args.input_dir, kind, "feats.scp")
        if not os.path.isfile(src):
            raise EbmError(f"{src} is missing: run stage 4 (Tacotron 2's decoding) first")
    for kind in ("norm", "denorm"):
        reader = open_feats_scp(os.path.join(args.input_dir, kind, "feats.scp"))
        os.makedirs(os.path.join(tmp, kind))
        lines = []
        for key in reader.keys():
            np.save(os.path.join(tmp, kind, f"{key}.npy"), scale_variance(reader[key], args.scale))
            lines.append(f"{key} {os.path.join(out, kind, key + '.npy')}\n")  # the final paths
        with open(os.path.join(tmp, kind, "feats.scp"), "w") as f:
            f.writelines(lines)
    if os.path.isfile(os.path.join(args.input_dir, "rtf")):
        shutil.copy(os.path.join(args.input_dir, "rtf"), os.path.join(tmp, "rtf"))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    logging.info(f"{len(lines)} utterances, variance scaled by {args.scale:g} -> {out}")


if __name__ == "__main__":
    run(main)
