"""Collect stage 7's scores into RESULTS.md, RESULTS.json and plots: the EBM against Tacotron 2.

Rows: the references through the vocoder (analysis-synthesis: the floor any system can reach with it), Tacotron 2's
free-running decodes, the variance-scaling controls (Tacotron 2 sharpened without text or energy; the scale with
the lowest dev MCD is the control, and each verdict says whether the EBM beats it too), and every Langevin decode of
every EBM given. For each EBM (one ``exp/ebm_*`` directory,
i.e. one training criterion) the setting chosen on *dev* is marked: the verdict's rule applied to dev (MCD lower,
predicted MOS, log-F0 RMSE and FFE no worse than Tacotron 2's), the lowest dev MCD among the settings that fail the
fewest of those conditions; the verdict compares its *eval* numbers with Tacotron 2's. Eval never chooses anything:
a decode may exist on dev only (a setting of ``search.sh``), and when the dev-chosen one has no eval decode yet the
verdict says which to run.

The verdict says "beats" only when every one of these holds on eval: MCD lower outside the noise (the 95% paired
bootstrap interval of the per-utterance difference below 0); predicted MOS not worse outside the noise (its
interval not below 0); log-F0 RMSE and FFE no worse; and, when a variance-scaling control was run, MCD lower than
the control's outside the noise. MCD after Griffin-Lim can be lowered by sharpening or by noise in pauses, so the
measures a vocoder cannot game stand beside it for every row, each as a difference from Tacotron 2 with its
interval: the predicted MOS (DistillMOS), the vocoder-free mel distance, and the share of MCD from the reference's
silent frames (definitions in :mod:`ebm.metrics`). A measure that is NaN for every utterance (log-F0 RMSE with no
frame voiced in both) is shown as NaN (``null`` in the JSON), and a plot that cannot be drawn is skipped with a
warning: the tables are always written.

A comparison is only as fair as its baseline is trained: with ``--baseline_two_thirds`` (stage 7 gives it when stage
3 trained past its dev-loss rule), a section says whether Tacotron 2 as compared is better, on dev, than the same
training stopped two thirds of the way (:func:`ebm.results.convergence_check`); RESULTS.json keeps it in Tacotron
2's record.

The records, the dev choice and the verdict are :mod:`ebm.results`; this script reads, plots and writes.

``--search_log`` writes every setting tried, one row each with its training knobs (from the EBM's
``config.yaml``) and its decoding knobs, with dev numbers only: the log of the search.
"""

import argparse
import inspect
import json
import logging
import math
import os
import re

import numpy as np
import yaml

from ebm.audio import read_mel
from ebm.cli import run, setup_logging
from ebm.io import read_scp, write_atomic
from ebm.metrics import SILENCE_DB
from ebm.results import (CONDITIONS, REPRODUCED, ScoreTables, choose_control_on_dev, choose_on_dev,
                         convergence_check, passes_on_dev, verdict, verdict_at_a_glance)
from ebm.scoring import add_f0_range, f0_range
from ebm.vocoder import FeatureSettings


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev_set", required=True)
    p.add_argument("--eval_set", required=True)
    p.add_argument("--vocoder_tag", required=True, help="scores_<tag>.tsv and wav_<tag>/ in every system dir")
    p.add_argument("--ground_truth", required=True, help="analysis-synthesis dir (<set>/scores_<tag>.tsv)")
    p.add_argument("--baseline", required=True, help="Tacotron 2's decode dir (<set>/{rtf,scores_<tag>.tsv})")
    p.add_argument("--baseline_params", type=int, default=None)
    p.add_argument("--ebm", action="append", default=[], help="a Langevin decode dir (repeatable)")
    p.add_argument("--control", action="append", default=[],
                   help="a variance-scaled Tacotron 2 decode dir, ebm.bin.gv_postfilter's (repeatable)")
    p.add_argument("--baseline_two_thirds", default=None,
                   help="Tacotron 2's free-running decode dir for the model selected two thirds of the way through "
                        "its training (stage 3's at_two_thirds/, decoded on dev by stage 4): the convergence check "
                        "against --baseline")
    p.add_argument("--baseline_two_thirds_epoch", type=int, default=None,
                   help="the epoch at which that model was selected (stage 3's at_two_thirds/epoch)")
    p.add_argument("--ref_wav_scp", default=None,
                   help="eval references: their mels head the mel plots")
    FeatureSettings.add_arguments(p)
    add_f0_range(p)  # the range stage 7 scored with (the tables' settings are checked against it)
    p.add_argument("--num_mel_plots", type=int, default=3)
    p.add_argument("--output_md", required=True)
    p.add_argument("--output_json", required=True)
    p.add_argument("--plot_dir", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--search_log", default=None, help="TSV of every EBM setting with its dev numbers")
    return p


def _steps(n) -> str:
    return f"{n} step" if int(n) == 1 else f"{n} steps"


def training_knobs(exp):
    """What the search varies at training time, read back from the EBM's config.yaml."""
    path = os.path.join(exp, "config.yaml")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    model, net = cfg.get("model_conf") or {}, cfg.get("energy_network_conf") or {}
    from ebm.energy_network import EnergyNetwork  # its defaults fill what the config leaves out

    defaults = {k: p.default for k, p in inspect.signature(EnergyNetwork.__init__).parameters.items()}
    net = {**defaults, **net}

    def hypothesis(c):
        h = (c.get("conf") or {}).get("hypothesis")
        return h if isinstance(h, str) or h is None else h.get("name")

    crit = [f"{c.get('label', c['name'])}*{c.get('weight', 1.0)}" + (f"@{hypothesis(c)}" if hypothesis(c) else "")
            for c in model.get("criteria") or []]
    return {
        "criteria": "+".join(crit) or "-",
        "negatives": "+".join(f"{s.get('label', s['name'])}*{s.get('weight', 1.0)}"
                              for s in model.get("samplers") or []) or "-",
        "pooling": net["pooling"],
        "spectral_norm": net["spectral_norm"],
        "lr": (cfg.get("optim_conf") or {}).get("lr", "-"),
        "max_epoch": cfg.get("max_epoch", "-"),
    }


def write_search_log(records, best_by_exp, base, path):
    """One row per EBM setting tried, dev numbers only (eval never takes part in the choice)."""
    knobs = {exp: training_knobs(exp) for exp in {r.exp for r in records}}
    cols = ["exp", "criteria", "negatives", "pooling", "spectral_norm", "lr", "max_epoch", "init", "steps", "lambda",
            "sigma", "normalize_grad", "min_bin", "noise_level_max", "dev_mcd", "dev_log_f0_rmse", "dev_vde",
            "dev_gpe", "dev_ffe", "dev_predicted_mos", "dev_mel_distance", "dev_mcd_silence_share", "dev_rtf",
            "passes_on_dev", "chosen_on_dev"]
    lines = ["\t".join(cols)]
    for r in sorted(records, key=lambda r: (r.exp, r.dev.mcd)):
        k = knobs[r.exp] or {"criteria": r.criterion or "-"}  # a product of experts has no config.yaml
        vals = [os.path.basename(r.exp)] + [k.get(c, "-") for c in cols[1:7]] + [
            r.init, r.steps, r.step_size, r.sigma, r.normalize_grad, r.min_bin, fmt(r.noise_level_max, 2)] + [
            fmt(r.dev.get(m), 4) for m in ("mcd", "log_f0_rmse", "vde", "gpe", "ffe", "predicted_mos",
                                           "mel_distance", "mcd_silence_share", "rtf")] + [
            passes_on_dev(r, base), best_by_exp[r.exp] is r]
        lines.append("\t".join(str(v) for v in vals))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")


def fmt(v, nd=3):
    """A table cell: "-" where there is no value, "NaN" where the measure is undefined for every utterance."""
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


#: The measures beside MCD, each a paired difference from Tacotron 2 with its interval: (key, name, digits).
GAMEPROOF = (("predicted_mos", "predicted MOS", 3), ("mel_distance", "mel distance (dB)", 3),
             ("mcd_silence_share", "silence share of MCD", 3))


def plots(records, base, gt, best_by_exp, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.plot_dir, exist_ok=True)
    written = []

    def save(fig, path, dpi):
        """Draw and write one figure; one that cannot be drawn (no finite data on a log axis) is skipped."""
        try:
            fig.tight_layout()
            fig.savefig(path, dpi=dpi)
            written.append(path)
        except (ValueError, OverflowError) as e:
            logging.warning(f"skipped the plot {path}: it cannot be drawn ({e})")
        plt.close(fig)
    # Quality and cost against Langevin steps, one line per EBM and step size; Tacotron 2 as the reference line.
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5), gridspec_kw={"width_ratios": [1, 1, 1, 0.9]})
    groups = {}
    for r in records:
        name = os.path.basename(r.exp) + (f" w={r.weights}" if r.weights else "")
        groups.setdefault((name, r.step_size, r.sigma, r.min_bin or 0, r.noise_level_max), []).append(r)
    for n, ((exp, lam, sig, min_bin, level), rs) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        rs = sorted(rs, key=lambda r: r.steps)
        xs = [max(r.steps, 0.5) for r in rs]
        label = (f"{exp} lambda={lam} sigma={sig}" + (f" min_bin={min_bin}" if min_bin else "")
                 + (f" from level {level:g}" if level is not None else ""))
        color = f"C{n % 10}"  # one colour per setting in every panel
        axes[0].plot(xs, [r.dev.mcd for r in rs], "o--", color=color, alpha=0.5, label=f"{label} (dev)")
        ev = [(x, r.eval) for x, r in zip(xs, rs) if r.eval is not None]  # dev-only search settings: no eval
        if ev:
            axes[0].plot([x for x, _ in ev], [e.mcd for _, e in ev], "o-", color=color, label=f"{label} (eval)")
        axes[1].plot(xs, [r.dev.log_f0_rmse for r in rs], "o--", color=color, label=f"{label} (dev)")
        axes[2].plot(xs, [r.dev.rtf or np.nan for r in rs], "o--", color=color, label=f"{label} (dev)")
    for ax, key, ylabel, part in ((axes[0], "mcd", "MCD (dB)", "eval"), (axes[1], "log_f0_rmse", "log-F0 RMSE", "dev"),
                                  (axes[2], "rtf", "RTF (Tacotron 2 + Langevin)", "dev")):
        if getattr(base, part).get(key) is not None:
            ax.axhline(getattr(base, part).get(key), color="k", ls=":", label=f"Tacotron 2 ({part})")
        if key != "rtf":
            ax.axhline(getattr(gt, part).get(key), color="gray", ls="-.", label=f"analysis-synthesis ({part})")
        if np.all(np.isfinite(ax.dataLim.intervalx)):  # no finite point (a measure NaN throughout): a log axis
            ax.set_xscale("log")                          # cannot be drawn, so the panel stays linear and empty
        ax.set_xlabel("Langevin steps")
        ax.set_ylabel(ylabel)
    axes[3].axis("off")  # the legend gets a panel of its own: a search has many settings
    axes[3].legend(*axes[0].get_legend_handles_labels(), loc="center left", fontsize=6, ncol=1 + len(groups) // 24)
    save(fig, os.path.join(args.plot_dir, "metrics_vs_steps.png"), 100)

    # Energy along the chain (dev, which every setting has; mean over utterances), for the longest decode of each EBM.
    fig, ax = plt.subplots(figsize=(6, 4))
    for exp in sorted({r.exp for r in records}):
        longest = max((r for r in records if r.exp == exp), key=lambda r: r.steps)
        efile = os.path.join(longest.dir, args.dev_set, "energy")
        if not os.path.isfile(efile):
            continue
        with open(efile) as f:
            rows = [np.array([float(v) for v in line.split()[1:]]) for line in f if line.strip()]
        n = min(len(r) for r in rows)
        ax.plot(np.mean([r[:n] for r in rows], axis=0),
                label=f"{os.path.basename(exp)} (lambda={longest.step_size})")
    ax.set_xlabel("recorded Langevin step")
    ax.set_ylabel("mean energy (dev)")
    ax.legend(fontsize=7)
    save(fig, os.path.join(args.plot_dir, "energy_vs_step.png"), 100)

    # Mels of a few eval utterances: reference (analysis), Tacotron 2, each EBM at its dev-chosen setting.
    from ebm.io import open_feats_scp

    base_scp = os.path.join(base.dir, args.eval_set, "denorm", "feats.scp")
    if os.path.isfile(base_scp) and args.num_mel_plots > 0:
        base_r = open_feats_scp(base_scp)
        ebm_r = {exp: open_feats_scp(os.path.join(r.dir, args.eval_set, "denorm", "feats.scp"))
                 for exp, r in best_by_exp.items() if r.eval is not None}
        refs = dict(read_scp(args.ref_wav_scp)) if args.ref_wav_scp else {}
        settings = FeatureSettings.from_args(args)
        for key in sorted(base_r.keys())[: args.num_mel_plots]:
            panels = []
            if key in refs:
                panels.append(("reference", read_mel(key, settings, wav_path=refs[key])))
            panels.append(("Tacotron 2", base_r[key]))
            panels += [(f"{os.path.basename(exp)} ({_steps(best_by_exp[exp].steps)})", r[key])
                       for exp, r in ebm_r.items()]
            fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)))
            for ax, (title, mel) in zip(np.atleast_1d(axes), panels):
                ax.imshow(np.asarray(mel).T, origin="lower", aspect="auto", interpolation="none")
                ax.set_title(f"{key}: {title}", fontsize=8)
            save(fig, os.path.join(args.plot_dir, f"mel_{key}.png"), 90)
    return written


def gameproof_cells(r, key, nd):
    """Two cells of the measures' table: the eval mean, and the difference from Tacotron 2 with its interval."""
    e = r.eval
    if e is None:
        return "- | -"
    d = (e.diff_vs_tacotron2_ci95 or {}).get(key)
    if d is None:
        return f"{fmt(e.get(key), nd)} | -"
    if any(math.isnan(v) for v in d):
        return f"{fmt(e.get(key), nd)} | NaN"
    return f"{fmt(e.get(key), nd)} | {d[0]:+.{nd}f} [{d[1]:+.{nd}f}, {d[2]:+.{nd}f}]"


def nan_to_null(x):
    """JSON has no NaN: an undefined measure is written as null."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: nan_to_null(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_null(v) for v in x]
    return x


def json_records(gt, base, controls, records, verdicts, best_by_exp, chosen_on_dev, vocoder_tag):
    """RESULTS.json's rows: one per system, the verdict's numbers added to each dev-chosen setting's eval entry."""
    extra = {id(best_by_exp[exp]): v.eval_extra() for exp, v in verdicts.items()}

    def js(r):
        out = {k: getattr(r, k) for k in ("system", "criterion", "init", "steps", "sigma", "min_bin",
                                          "noise_level_max", "params", "scale")}
        out["lambda"] = r.step_size
        out["exp"] = os.path.basename(r.exp) if r.exp and r.system == "ebm" else None
        out["decode"] = os.path.basename(os.path.normpath(r.dir)) if r.exp else None
        out["chosen_on_dev"] = chosen_on_dev(r)
        out["vocoder"] = vocoder_tag
        out["eval"] = {**r.eval.to_dict(), **extra.get(id(r), {})} if r.eval is not None else None
        out["dev"] = r.dev.to_dict()
        for k in ("mcd", "log_f0_rmse", "ffe", "rtf") + tuple(key for key, _, _ in GAMEPROOF):
            out[k] = (r.eval or {}).get(k)
        return out

    return [js(gt), js(base)] + [js(c) for c in controls] + [js(r) for r in records]


def glance_table(records_json):
    """RESULTS.md's verdict as a table (ebm.results.verdict_at_a_glance), above the verdict's sentences."""
    rows = verdict_at_a_glance(nan_to_null(records_json))
    if not rows:
        return []
    head = [h for _, _, h, _, _ in CONDITIONS]
    out = ["Each row's per-utterance difference from Tacotron 2 with its 95% interval (the last column: from the "
           "control); ✓ the condition holds, ✗ it fails, none: not judged (the control is shown for comparison)."
           "\n\n",
           "| system (dev-chosen setting) | " + " | ".join(head) + " | beats Tacotron 2 |\n",
           "|" + "---|" * (len(head) + 2) + "\n"]
    for row in rows:
        cells = [text + ("" if ok is None else (" ✓" if ok else " ✗")) for text, ok in row["cells"]]
        name = f"`{row['exp']}` ({row['setting']})" if row["exp"] else row["setting"]
        beats = "-" if row["beats"] is None else ("**yes**" if row["beats"] else "no")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {beats} |\n")
    return out + ["\n"]


def convergence_section(rows, improved, two_thirds_dir, epoch, dev_set):
    """RESULTS.md's convergence check: Tacotron 2 as compared against the same training stopped two thirds of the
    way."""
    at = f"epoch {epoch}" if epoch else "two thirds"
    out = ["\n## Is Tacotron 2 trained long enough? (dev)\n\n",
           f"Stage 3 trained Tacotron 2 past the epoch its dev-loss rule stopped at (`--train_extend`), by way of "
           f"{at}, where it kept the model selected then (`{two_thirds_dir}`): the Tacotron 2 of every table here is "
           f"that model trained at least 50% longer. Both decoded free-running on `{dev_set}` the same way; "
           "per-utterance difference (trained on minus two thirds) with its 95% paired bootstrap interval.\n\n",
           f"| measure | {at} | trained on | difference [95% interval] | trained on is |\n|---|---|---|---|---|\n"]
    names = {key: (name, nd) for key, name, nd in REPRODUCED}
    for r in rows:
        name, nd = names[r["key"]]
        d, lo, hi = r["diff_ci95"]
        out.append(f"| {name} | {fmt(r['two_thirds'], nd)} | {fmt(r['trained_on'], nd)} | "
                   f"{d:+.{nd}f} [{lo:+.{nd}f}, {hi:+.{nd}f}] | {r['outcome']} |\n")
    if improved:
        out.append(f"\nThe last third of the training still improved {', '.join(improved)} outside the noise: the "
                   "baseline had not levelled off, and a comparison with it is one with a Tacotron 2 still "
                   "improving. Train it longer (a larger `--train_extend`; a re-run of stage 3 resumes it) and "
                   "re-run stages 4-7.\n")
    else:
        out.append("\nNo measure improved outside the noise over the last third of the training: by this check "
                   "the baseline had levelled off.\n")
    return out


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    f0_range(args)  # a bad range fails before any work
    tables = ScoreTables(args.dev_set, args.eval_set, args.vocoder_tag, args.f0min, args.f0max, args.fs, args.n_shift)
    base = tables.system("tacotron2", args.baseline, params=args.baseline_params)
    gt = tables.with_diffs(tables.system("analysis-synthesis", args.ground_truth), base)
    records = [tables.with_diffs(tables.ebm(d, base), base) for d in args.ebm]
    controls = [tables.with_diffs(tables.control(d), base) for d in args.control]
    two_thirds = convergence = None
    if args.baseline_two_thirds:
        two_thirds = tables.system("tacotron2_two_thirds", args.baseline_two_thirds, with_eval=False)
        convergence = convergence_check(base, two_thirds, tables)
    best_by_exp = choose_on_dev(records, base)
    ctl = choose_control_on_dev(controls) if controls else None
    chosen = [ctl] + list(best_by_exp.values())

    def chosen_on_dev(r):
        return any(r is c for c in chosen)

    figures = plots(records, base, gt, best_by_exp, args) if records else []

    cols = ["mcd", "log_f0_rmse", "vde", "gpe", "ffe"]
    head = ("| system | criterion | init | steps | lambda | sigma | min bin | start level | dev MCD | eval MCD | "
            "eval log-F0 RMSE | eval VDE | eval GPE | eval FFE | eval RTF | params |\n|" + "---|" * 16 + "\n")

    def row(r, name):
        e = r.eval or {}
        return (f"| {name} | {r.criterion or '-'} | {r.init or '-'} | {fmt(r.steps)} | "
                f"{fmt(r.step_size, 4)} | {fmt(r.sigma, 2)} | {fmt(r.min_bin)} | {fmt(r.noise_level_max, 2)} | "
                f"{fmt(r.dev.mcd)} | "
                + " | ".join(fmt(e.get(c), 3 if c == "mcd" else 4) for c in cols)
                + f" | {fmt(e.get('rtf'), 3)} | {fmt(r.params)} |\n")

    md = [f"# RESULTS{(': ' + args.title) if args.title else ''}\n\n",
          f"Eval set `{args.eval_set}`, settings chosen on `{args.dev_set}`; vocoder `{args.vocoder_tag}` for every "
          "row. Metrics (definitions in `ebm/metrics.py`): MCD in dB (mel-cepstrum order 34, c0 included, DTW), "
          f"log-F0 RMSE (natural log, WORLD harvest searching {args.f0min:g}-{args.f0max:g} Hz, frames voiced in "
          "both), VDE, GPE (20%), FFE. RTF: seconds of "
          "computation per second of audio on this machine; an EBM's RTF is Tacotron 2's plus Langevin's. "
          "Beside them, measures a vocoder cannot game: predicted MOS (DistillMOS, 1-5, higher is better), the "
          "mel distance (dB, DTW-aligned, between the log mel the system's model output and the reference's, before "
          "any vocoder; 0 for analysis-synthesis), and the share of MCD from frames where the reference is silent "
          f"(more than {SILENCE_DB:g} dB below its loudest frame). NaN: undefined for every utterance (e.g. no frame "
          "voiced in both). "
          "**Bold** marks each EBM's setting chosen on dev: the lowest dev MCD among the settings that fail the "
          "fewest of the verdict's four conditions on dev (MCD lower, predicted MOS, log-F0 RMSE and FFE no worse "
          "than Tacotron 2's). A verdict says \"beats\" only if, on eval, MCD is lower outside the noise (95% "
          "paired bootstrap interval), predicted MOS is not worse outside the noise, log-F0 RMSE and FFE are no "
          "worse, and MCD is lower than the dev-chosen control's outside the noise (when controls were run). "
          "Each verdict also compares log-F0 RMSE on the same frames for both systems, those "
          "voiced in the reference and in both (`ebm.bin.compare_f0`): better voicing alone adds hard frames to "
          "the table's log-F0 RMSE."
          + (" Control rows: Tacotron 2's output with each mel bin's deviations from its utterance mean scaled "
             "(`ebm.bin.gv_postfilter`), sharpening without text or energy; the scale with the lowest dev MCD is "
             "the control (what sharpening alone gains on MCD), and each verdict ends with the EBM against it."
             if controls else "") + "\n\n",
          "## Verdict (eval, at the dev-chosen setting)\n\n"]
    if not records:
        md.append("No EBM decodes were given (stage 6 not run?).\n")
    verdicts = {exp: verdict(best, base, tables, ctl)
                for exp, best in sorted(best_by_exp.items())}
    records_json = json_records(gt, base, controls, records, verdicts, best_by_exp, chosen_on_dev, args.vocoder_tag)
    md += glance_table(records_json)
    for exp, best in sorted(best_by_exp.items()):
        how = "" if passes_on_dev(best, base) else " (no setting met all four conditions on dev)"
        md.append(f"- `{os.path.basename(exp)}` ({best.criterion}; {_steps(best.steps)}, lambda "
                  f"{best.step_size}, sigma {best.sigma}, "
                  + (f"drift from mel bin {best.min_bin}, " if best.min_bin else "")
                  + (f"annealed from noise level {best.noise_level_max:g}, " if best.noise_level_max else "")
                  + f"from {best.init}{how}): {verdicts[exp].text}\n")
    if ctl is not None and ctl.eval is not None:
        e, b = ctl.eval, base.eval
        md.append(f"- control: Tacotron 2 with its {ctl.criterion} (the scale chosen on dev): MCD {e.mcd:.3f} vs "
                  f"{b.mcd:.3f} dB ({100.0 * (e.mcd - b.mcd) / b.mcd:+.1f}%), predicted MOS "
                  f"{e.predicted_mos:.3f} vs {b.predicted_mos:.3f}, log-F0 RMSE "
                  f"{e.log_f0_rmse:.4f} vs {b.log_f0_rmse:.4f}, FFE {e.ffe:.4f} vs {b.ffe:.4f}\n")
    if convergence is not None:
        md += convergence_section(*convergence, args.baseline_two_thirds, args.baseline_two_thirds_epoch,
                                  args.dev_set)
        rows, improved = convergence
        tacotron2 = next(r for r in records_json if r["system"] == "tacotron2")
        tacotron2["convergence_check"] = {"two_thirds": args.baseline_two_thirds,
                                          "two_thirds_epoch": args.baseline_two_thirds_epoch,
                                          "dev_two_thirds": two_thirds.dev.to_dict(),
                                          "measures": rows, "improved": improved}
    named = [(gt, "analysis-synthesis"), (base, "Tacotron 2")]
    for c in sorted(controls, key=lambda c: c.scale or 0):
        name = f"Tacotron 2 + {c.criterion} (control)"
        named.append((c, f"**{name}**" if chosen_on_dev(c) else name))
    for r in sorted(records, key=lambda r: (r.exp, r.step_size, r.sigma, r.min_bin or 0, r.noise_level_max or 0,
                                            r.steps)):
        name = f"EBM `{os.path.basename(r.exp)}`"
        named.append((r, f"**{name}**" if chosen_on_dev(r) else name))
    md += ["\n## All systems\n\n", head] + [row(r, name) for r, name in named]
    md += ["\n## Measures a vocoder cannot game (eval)\n\nEach system's mean, then its per-utterance difference from "
           "Tacotron 2 with the 95% paired bootstrap interval.\n\n",
           "| system | steps | lambda | "
           + " | ".join(f"{name} | difference [95% interval]" for _, name, _ in GAMEPROOF)
           + " |\n|" + "---|" * (3 + 2 * len(GAMEPROOF)) + "\n"]
    for r, name in named:
        md.append(f"| {name} | {fmt(r.steps)} | {fmt(r.step_size, 4)} | "
                  + " | ".join(gameproof_cells(r, key, nd) for key, _, nd in GAMEPROOF) + " |\n")
    md.append("\nPer-utterance scores: `<decode dir>/<set>/scores_" + args.vocoder_tag + ".tsv`; plots: "
              + ", ".join(f"`{os.path.relpath(p, os.path.dirname(os.path.abspath(args.output_md)))}`"
                          for p in figures) + "\n")
    write_atomic(args.output_md, "".join(md))

    write_atomic(args.output_json, json.dumps(nan_to_null(records_json), indent=1, allow_nan=False) + "\n")
    if args.search_log and records:
        write_search_log(records, best_by_exp, base, args.search_log)
        logging.info(f"wrote {args.search_log}: {len(records)} settings with their dev numbers")
    logging.info(f"wrote {args.output_md}, {args.output_json} and {len(figures)} plots in {args.plot_dir}")
    for exp, v in verdicts.items():
        logging.info(f"{os.path.basename(exp)}: " + re.sub(r"\*\*", "", v.text))


if __name__ == "__main__":
    run(main)
