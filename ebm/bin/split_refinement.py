"""Split each Langevin refinement into its part along the true correction and the rest (a diagnosis, not a stage).

With ``h`` an initial hypothesis, ``y`` its refinement and ``W`` the reference carried onto ``h``'s timing along
their DTW path (the pairing of the delta criterion's ``align: dtw``), the step ``g = y - h`` is split per utterance,
in the normalised mel domain the energy works in, into ``c * D`` along the true correction ``D = W - h`` (``c =
<g, D> / <D, D>``) and the remainder ``g - c * D``. Written under ``--output_dir``:

- ``summary.tsv``: per utterance ``c``, ``cos(g, D)``, ``|g| / |D|`` and the mel gain ``1 - |W - y|^2 / |W -
  h|^2``; the log gives them pooled over frames;
- ``along/`` (``h + c * D``) and ``rest/`` (``h + g - c * D``), each with ``norm/`` and ``denorm/feats.scp`` like
  any decode, for ``vocode`` and ``score_wavs``;
- with ``--exact_shares A,B,...``, ``exact_A/`` ... (``h + A * D``): an exact share of the correction, the yardstick
  for a learnt step (a step of cosine c at its best length removes c^2 of the squared error, as an exact share A
  does when c^2 = 1 - (1 - A)^2); without ``--refined_dir`` only these are written.

Why: MCD after a vocoder is not the mel distance the energy is trained on. A step nearly orthogonal to ``D`` that
lowers MCD sharpens rather than corrects. A step whose cosine is close to its relative size ``|g| / |D|`` is what
the delta criterion's squared loss trains, the conditional mean of the correction: it averages over what text and
hypothesis cannot tell, so it may smooth. ``along`` is not what the energy knows: ``c * D`` carries a share of the
whole correction, the unpredictable part included, so compare ``rest`` and the full step with an exact correction
of the same mel gain. The mini_espeak and cathy recipe READMEs have a case of each.
"""

import argparse
import contextlib
import io
import logging
import os
import shutil

import numpy as np

from ebm.audio import read_mel
from ebm.cli import EbmError, run, setup_logging
from ebm.io import open_feats_scp, read_scp, write_atomic
from ebm.vocoder import FeatureSettings


def measures(gd: float, gg: float, dd: float) -> dict:
    """c, cos, ratio and mel gain from the inner products <g, D>, <g, g>, <D, D> (one utterance's, or pooled)."""
    return {"c": gd / dd if dd > 0 else 0.0, "cos": gd / np.sqrt(gg * dd) if gg > 0 and dd > 0 else 0.0,
            "ratio": np.sqrt(gg / dd) if dd > 0 else 0.0, "gain": (2 * gd - gg) / dd if dd > 0 else 0.0,
            "gd": gd, "gg": gg, "dd": dd}


def split_step(h: np.ndarray, y: np.ndarray, w: np.ndarray):
    """``(along, rest, stats)`` of the step ``y - h`` against the correction ``w - h``; all (T, D), same shape."""
    g, d = y - h, w - h
    stats = measures(float((g * d).sum()), float((g * g).sum()), float((d * d).sum()))
    c = stats["c"]
    return (h + c * d).astype(np.float32), (y - c * d).astype(np.float32), stats


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref_wav_scp", required=True, help="the references (dump/raw/<set>/wav.scp)")
    p.add_argument("--init_dir", required=True, help="the initial hypotheses: a decode dir with norm/feats.scp")
    p.add_argument("--refined_dir", default=None,
                   help="their Langevin refinement: a decode dir with norm/feats.scp (omit: exact shares only)")
    p.add_argument("--exact_shares", default="",
                   help="comma-separated shares A of the true correction to write as exact_A/ decodes, e.g. 0.1,0.3")
    p.add_argument("--stats_file", required=True, help="the feats_stats.npz both were normalised with (stage 2)")
    p.add_argument("--output_dir", required=True)
    FeatureSettings.add_arguments(p)
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        shares = [float(a) for a in args.exact_shares.split(",") if a.strip()]
    except ValueError:
        raise EbmError(f"--exact_shares {args.exact_shares!r}: give comma-separated numbers, e.g. 0.1,0.3")
    if args.refined_dir is None and not shares:
        raise EbmError("nothing to write: give --refined_dir (the split of a refinement) or --exact_shares")
    for d in [args.init_dir] + ([args.refined_dir] if args.refined_dir else []):
        if not os.path.isfile(os.path.join(d, "norm", "feats.scp")):
            raise EbmError(f"{d}/norm/feats.scp is missing: give a decode dir of one set (stage 4 or 6 writes it)")
    if not os.path.isfile(args.stats_file):
        raise EbmError(f"{args.stats_file} does not exist: give the recipe's exp/*stats*/train/feats_stats.npz")
    import torch

    with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
        from espnet2.layers.global_mvn import GlobalMVN

        from ebm.alignment import dtw_warped_reference
    mvn = GlobalMVN(args.stats_file)
    settings = FeatureSettings.from_args(args)
    refs = dict(read_scp(args.ref_wav_scp))
    init = open_feats_scp(os.path.join(args.init_dir, "norm", "feats.scp"))
    refined = open_feats_scp(os.path.join(args.refined_dir, "norm", "feats.scp")) if args.refined_dir else None
    keys, init_keys = sorted((init if refined is None else refined).keys()), set(init.keys())
    missing = [k for k in keys if k not in init_keys or k not in refs]
    if missing:
        raise EbmError(f"{len(missing)} utterances have no initial hypothesis in {args.init_dir} or no "
                       f"reference in {args.ref_wav_scp}, e.g. {missing[:3]}: give the decode it started from")
    parts = ([] if refined is None else ["along", "rest"]) + [f"exact_{a:g}" for a in shares]

    out = os.path.normpath(args.output_dir)
    tmp = out + ".tmp"  # written in full, then swapped in: a half-made split never looks complete
    shutil.rmtree(tmp, ignore_errors=True)
    scp = {(part, kind): [] for part in parts for kind in ("norm", "denorm")}
    for part, kind in scp:
        os.makedirs(os.path.join(tmp, part, kind))
    rows, pooled = [], np.zeros(3)
    for key in keys:
        h = np.asarray(init[key], dtype=np.float32)
        y = h if refined is None else np.asarray(refined[key], dtype=np.float32)
        if h.shape != y.shape:
            raise EbmError(f"{key}: refined {y.shape} vs initial {h.shape}; Langevin keeps the shape, so "
                           f"{args.refined_dir} was not decoded from {args.init_dir}")
        ref = torch.from_numpy(read_mel(key, settings, wav_path=refs[key]))[None]
        ref_lengths = torch.tensor([ref.shape[1]])
        ref, _ = mvn(ref, ref_lengths)
        w = dtw_warped_reference(ref, ref_lengths, torch.from_numpy(h)[None], torch.tensor([len(h)]))[0].numpy()
        out_feats = [(f"exact_{a:g}", (h + a * (w - h)).astype(np.float32)) for a in shares]
        if refined is not None:
            along, rest, st = split_step(h, y, w)
            pooled += (st["gd"], st["gg"], st["dd"])
            rows.append(f"{key}\t{st['c']:.4f}\t{st['cos']:.4f}\t{st['ratio']:.4f}\t{st['gain']:.4f}\n")
            out_feats = [("along", along), ("rest", rest)] + out_feats
        for part, feats in out_feats:
            denorm, _ = mvn.inverse(torch.tensor(feats)[None], torch.tensor([len(feats)]))  # copied: in place
            for kind, arr in (("norm", feats), ("denorm", denorm[0].numpy())):
                np.save(os.path.join(tmp, part, kind, f"{key}.npy"), arr)
                scp[part, kind].append(f"{key} {os.path.join(out, part, kind, key + '.npy')}\n")  # final paths
    for (part, kind), lines in scp.items():
        with open(os.path.join(tmp, part, kind, "feats.scp"), "w") as f:
            f.writelines(lines)
    if refined is not None:
        write_atomic(os.path.join(tmp, "summary.tsv"), "utt\tc\tcos\tratio\tgain\n" + "".join(rows))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    if refined is None:
        logging.info(f"{len(keys)} utterances: exact shares {', '.join(parts)} of the correction -> {out}")
        return
    st = measures(*pooled)
    logging.info(f"{len(keys)} utterances: step along the correction c = {st['c']:.3f}, cos(step, correction) = "
                 f"{st['cos']:.3f}, |step| / |correction| = {st['ratio']:.3f}, mel gain {st['gain']:.3f} -> {out}")


if __name__ == "__main__":
    run(main)
