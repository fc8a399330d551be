"""How much could choosing among a text's N Tacotron 2 decodes gain? (a diagnostic beside stages 4 and 7)

Stage 4 can decode each text N times (the seeded decode and ``--baseline_num_samples`` prenet-dropout samples).
If one of them is usually much better than the seeded one, an energy that ranks them (the paper's EBM used as a
reranker rather than a sampler) would be worth training; if even the best of them by the reference is not, no
ranker can reach a target, and the gain has to come from leaving Tacotron 2's samples. This script answers that
from the decodes' stage 7 score tables, per utterance, for these choices:

- ``oracle ...``: the decode best by one metric against the reference (lowest MCD, lowest mel distance, highest
  predicted MOS). It needs the reference, so it is a bound, not a system;
- ``medoid``: the decode with the least summed mel distance to the text's other decodes (the minimum Bayes risk
  choice under that distance; needs no reference and no model);
- ``lowest energy``: the decode of lowest energy per frame under an EBM (``--energy``: one file per decode, as
  ``ebm.bin.langevin_decode`` writes it, the first value of a line being the energy of its initial hypothesis).

Each choice is reported with every metric's mean and its per-utterance paired difference from the first decode
(the seeded one) with a 95% bootstrap interval; with energies, also the mean within-text Spearman correlation of
the energy per frame with the mel distance and with MCD (0: it ranks a text's decodes no better than chance).

Example (egs/<corpus>/tts1; the decodes vocoded with ``ebm.bin.vocode`` and scored with ``ebm.bin.score_wavs``)::

    python -m ebm.bin.best_of_n --decode seed0 D/free_running/scores.tsv D/free_running/denorm/feats.scp \\
        --decode sample1 D/free_running_sample1/scores.tsv D/free_running_sample1/denorm/feats.scp ... \\
        --output best_of_n.md
"""

import argparse

import numpy as np

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, write_atomic
from ebm.scoring import bootstrap, read_scores

#: The metrics reported, and whether lower is better.
METRICS = (("mcd", True), ("mel_distance", True), ("log_f0_rmse", True), ("ffe", True), ("predicted_mos", False))

#: The oracle choices: a metric and whether its lowest value is chosen.
ORACLES = (("mcd", True), ("mel_distance", True), ("predicted_mos", False))


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decode", nargs=3, action="append", required=True, metavar=("NAME", "SCORES_TSV", "MEL_SCP"),
                   help="one decode of every text: its stage 7 scores table and its denormalised feats.scp (npy); "
                        "at least two, the first (the seeded decode) is the baseline of the differences")
    p.add_argument("--energy", action="append", default=[],
                   help="an energy file per --decode, in the same order (langevin_decode's 'energy')")
    p.add_argument("--output", default=None, help="the table (markdown), written through a temporary name")
    p.add_argument("--n_boot", type=int, default=2000)
    return p


def medoid(mels):
    """Index of the mel with the least summed DTW mel distance to the others."""
    from ebm.metrics import mel_distance

    n = len(mels)
    d = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            d[a, b] = d[b, a] = mel_distance(mels[a], mels[b])
    return int(np.argmin(d.sum(axis=1)))


def spearman(a, b):
    """Spearman's rank correlation of two short vectors (ranks by order; NaN if either is constant)."""
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def read_energies(path, keys):
    energies = {}
    for key, value in read_scp(path):
        try:
            energies[key] = float(value.split()[0])
        except ValueError:
            raise EbmError(f"{path}: '{key}' has no number as its first energy; give langevin_decode's energy file")
    missing = [k for k in keys if k not in energies]
    if missing:
        raise EbmError(f"{path} has no energy for {len(missing)} utterances (e.g. {missing[0]}); compute it for "
                       "the same decode")
    return energies


def choices(decodes, energies=None):
    """``(keys, values, picks, extra)``: ``values[metric]`` is (utterances, decodes); ``picks`` maps a choice's
    name to the decode index chosen per utterance; ``extra`` holds the energy's rank correlations."""
    tables = [read_scores(scores) for _, scores, _ in decodes]
    keys = sorted(tables[0])
    for (name, scores, _), table in zip(decodes, tables):
        if sorted(table) != keys:
            raise EbmError(f"{scores} ({name}) scores other utterances than {decodes[0][1]}; score every decode "
                           "on the same set")
    values = {}
    for metric, _ in METRICS:
        for (name, scores, _), table in zip(decodes, tables):
            if metric not in table[keys[0]]:
                raise EbmError(f"{scores} ({name}) has no '{metric}' column; score it with ebm.bin.score_wavs")
        values[metric] = np.array([[t[k][metric] for t in tables] for k in keys])
    for metric, _ in ORACLES:  # a choice needs the value of every decode
        bad = np.argwhere(np.isnan(values[metric]))
        if bad.size:
            i, j = bad[0]
            name, scores, _ = decodes[j]
            raise EbmError(f"{scores} ({name}): {metric} of {keys[i]} is NaN; score every decode with its MEL_SCP "
                           "(ebm.bin.score_wavs --system WAV_SCP OUTPUT MEL_SCP)")
    mels = []
    for name, _, scp in decodes:
        paths = dict(read_scp(scp))
        missing = [k for k in keys if k not in paths]
        if missing:
            raise EbmError(f"{scp} ({name}) lacks {len(missing)} scored utterances (e.g. {missing[0]})")
        mels.append({k: np.load(paths[k]) for k in keys})
    picks = {"seeded (the first decode)": np.zeros(len(keys), dtype=int)}
    for metric, lowest in ORACLES:
        v = values[metric] if lowest else -values[metric]
        picks[f"oracle: {'lowest' if lowest else 'highest'} {metric}"] = np.nanargmin(v, axis=1)
    picks["medoid (mel distance)"] = np.array([medoid([m[k] for m in mels]) for k in keys])
    extra = {}
    if energies:
        if len(energies) != len(decodes):
            raise EbmError(f"{len(energies)} --energy files for {len(decodes)} decodes; give one per decode, in order")
        per_decode = [read_energies(path, keys) for path in energies]
        e = np.array([[t[k] / len(m[k]) for t, m in zip(per_decode, mels)] for k in keys])
        picks["lowest energy per frame"] = np.argmin(e, axis=1)
        for metric in ("mel_distance", "mcd"):
            extra[metric] = float(np.nanmean([spearman(e[i], values[metric][i]) for i in range(len(keys))]))
    return keys, values, picks, extra


def table(keys, values, picks, extra, n_boot=2000):
    rows = np.arange(len(keys))
    head = "| choice | " + " | ".join(f"{m} | difference [95% interval]" for m, _ in METRICS) + " |"
    lines = [f"{len(keys)} utterances, {values['mcd'].shape[1]} decodes each; differences from the first decode, "
             "per utterance.", "", head, "|---" * (1 + 2 * len(METRICS)) + "|"]
    for name, pick in picks.items():
        cells = []
        for metric, _ in METRICS:
            chosen = values[metric][rows, pick]
            mean, lo, hi = bootstrap(chosen - values[metric][:, 0], n_boot)
            cells.append(f"{np.nanmean(chosen):.3f} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if extra:
        lines.append("")
        lines += [f"Mean within-text Spearman correlation of the energy per frame with {metric}: {rho:+.3f}"
                  for metric, rho in extra.items()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    if len(args.decode) < 2:
        raise EbmError("give at least two --decode NAME SCORES_TSV MEL_SCP: the seeded decode first, then samples")
    out = table(*choices(args.decode, args.energy), n_boot=args.n_boot)
    print(out, end="")
    if args.output:
        write_atomic(args.output, out)


if __name__ == "__main__":
    run(main)
