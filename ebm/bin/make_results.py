"""Collect stage 7's scores into RESULTS.md, RESULTS.json and plots: the EBM against Tacotron 2.

Rows: the references through the vocoder (analysis-synthesis: the floor any system can reach with it), Tacotron 2's
free-running decodes, the variance-scaling controls (Tacotron 2 sharpened without text or energy; the scale chosen
on dev like an EBM's setting, and each verdict says whether the EBM beats it too), and every Langevin decode of
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
import warnings

import numpy as np
import soundfile as sf
import yaml

from ebm.bin.compare_f0 import Analyses, bootstrap, compare, summary
from ebm.bin.score_wavs import COLUMNS, add_f0_range, f0_range, read_scores
from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, write_atomic
from ebm.metrics import SILENCE_DB
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
    p.add_argument("--ref_wav_scp", default=None,
                   help="eval references: their mels head the mel plots; the verdicts compare pitch on the frames "
                        "voiced in them and in both systems")
    FeatureSettings.add_arguments(p)
    add_f0_range(p)  # the range stage 7 scored with; the common-voiced-frame comparison uses it too
    p.add_argument("--num_mel_plots", type=int, default=3)
    p.add_argument("--output_md", required=True)
    p.add_argument("--output_json", required=True)
    p.add_argument("--plot_dir", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--search_log", default=None, help="TSV of every EBM setting with its dev numbers")
    return p


def _steps(n) -> str:
    return f"{n} step" if int(n) == 1 else f"{n} steps"


def check_f0_range(path, args):
    """Scores made with another F0 search range than the one this table states would be mixed in silently; stage
    7 records its scoring options beside each table (``scores_<tag>.settings``; absent in older runs)."""
    record = path[:-len(".tsv")] + ".settings"
    if not os.path.isfile(record):
        return
    with open(record) as f:
        tokens = f.read().split()
    used = dict(zip(tokens[::2], tokens[1::2]))
    for opt in ("--f0min", "--f0max"):
        if opt in used and float(used[opt]) != getattr(args, opt[2:]):
            raise EbmError(f"{path} was scored with {opt} {used[opt]}, but this table is for {opt} "
                           f"{getattr(args, opt[2:]):g}: rerun stage 7 with the same --f0min/--f0max")


def nanmean(values):
    """Mean without NaNs; NaN (no warning) when every value is NaN, e.g. log-F0 RMSE with no frame voiced in both."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if len(values) else float("nan")


_SCORES = {}


def scores_of(path):
    """A scores table (:func:`read_scores`), read once; a table from before a metric existed is refused."""
    if path not in _SCORES:
        if not os.path.isfile(path):
            raise EbmError(f"{path} is missing: rerun stage 7 (its vocoding and scoring) for this system")
        scores = read_scores(path)
        if not scores:
            raise EbmError(f"{path} has no utterances")
        lacking = [c for c in COLUMNS if c not in next(iter(scores.values()))]
        if lacking:
            raise EbmError(f"{path} lacks the columns {', '.join(lacking)} (scored by an older stage 7): rerun "
                           "stage 7, which rescores it")
        _SCORES[path] = scores
    return _SCORES[path]


def mean_scores(path, args):
    if os.path.isfile(path):
        check_f0_range(path, args)
    scores = scores_of(path)
    out = {c: nanmean([s[c] for s in scores.values()]) for c in COLUMNS}
    out["n_utts"] = len(scores)
    return out


def rtf(path, fs, n_shift):
    """Seconds of computation per second of audio, from a ``key seconds frames`` file."""
    if not os.path.isfile(path):
        return None
    sec = frames = 0.0
    with open(path) as f:
        for line in f:
            _, s, n = line.split()
            sec, frames = sec + float(s), frames + int(n)
    return sec / (frames * n_shift / fs) if frames else None


def system_record(name, sysdir, args, eval_optional=False, **extra):
    rec = {"system": name, "dir": sysdir, **extra}
    for part, dset in (("dev", args.dev_set), ("eval", args.eval_set)):
        if part == "eval" and eval_optional and not os.path.isdir(os.path.join(sysdir, dset)):
            rec[part] = None  # decoded on dev only
            continue
        rec[part] = mean_scores(os.path.join(sysdir, dset, f"scores_{args.vocoder_tag}.tsv"), args)
        rec[part]["rtf"] = rtf(os.path.join(sysdir, dset, "rtf"), args.fs, args.n_shift)
    return rec


def ebm_record(ddir, args, baseline):
    settings_file = os.path.join(ddir, "settings.yaml")
    if not os.path.isfile(settings_file):
        raise EbmError(f"{settings_file} is missing: rerun stage 6 for {ddir}")
    with open(settings_file) as f:
        st = yaml.safe_load(f)
    rec = system_record("ebm", ddir, args, eval_optional=True, exp=os.path.dirname(os.path.normpath(ddir)),
                        criterion=st.get("criterion"), init=st.get("init"), steps=st["sampler"]["steps"],
                        step_size=st["sampler"]["step_size"], sigma=st["sampler"]["sigma"],
                        normalize_grad=st["sampler"].get("normalize_grad"),
                        min_bin=st["sampler"].get("drift_min_bin", 0), params=st.get("params"),
                        weights="/".join(f"{e['weight']:g}" for e in st["experts"]) if st.get("experts") else None)
    for part in ("dev", "eval"):  # refinement cost on its own, and the whole system's (Tacotron 2 + Langevin)
        if rec[part] is None:
            continue
        r, b = rec[part]["rtf"], baseline[part]["rtf"]
        rec[part]["rtf_refine"] = r
        rec[part]["rtf"] = (r + b) if (r is not None and b is not None) else r
    return rec


def control_record(cdir, args):
    """A variance-scaled Tacotron 2 (``<base>_gv<scale>``); its cost is Tacotron 2's."""
    m = re.search(r"_gv([0-9.]+)$", os.path.normpath(cdir))
    scale = float(m.group(1)) if m else None
    return system_record("control_gv", cdir, args, exp="control_gv", scale=scale,
                         criterion=f"variance x{scale:g}" if scale is not None else "variance scaling")


def eval_scores(rec, args):
    return scores_of(os.path.join(rec["dir"], args.eval_set, f"scores_{args.vocoder_tag}.tsv"))


def against_control(best, ctl, args):
    """The EBM's eval MCD against the dev-chosen control's, with the paired interval: what the energy adds to
    sharpening. Returns ``(text, beats)``; ``beats`` is None when there is no control to compare with."""
    if ctl is None or best["eval"] is None or ctl["eval"] is None:
        return "", None
    d, lo, hi = paired_ci(eval_scores(best, args), eval_scores(ctl, args), "mcd")
    best["eval"]["mcd_diff_vs_control_ci95"] = [d, lo, hi]
    e, c = best["eval"], ctl["eval"]
    outcome = "beats it" if hi < 0 else ("is worse" if lo > 0 else "is within the noise of it")
    return (f". Against the control ({ctl['criterion']}, chosen on dev): MCD {e['mcd']:.3f} vs {c['mcd']:.3f} "
            f"(per-utterance difference {d:+.3f} dB, 95% interval [{lo:+.3f}, {hi:+.3f}]: the EBM {outcome}), "
            f"predicted MOS {e['predicted_mos']:.3f} vs {c['predicted_mos']:.3f}, log-F0 RMSE "
            f"{e['log_f0_rmse']:.4f} vs {c['log_f0_rmse']:.4f}, FFE {e['ffe']:.4f} vs {c['ffe']:.4f}"), hi < 0


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
    knobs = {exp: training_knobs(exp) for exp in {r["exp"] for r in records}}
    cols = ["exp", "criteria", "negatives", "pooling", "spectral_norm", "lr", "max_epoch", "init", "steps", "lambda",
            "sigma", "normalize_grad", "min_bin", "dev_mcd", "dev_log_f0_rmse", "dev_vde", "dev_gpe", "dev_ffe",
            "dev_predicted_mos", "dev_mel_distance", "dev_mcd_silence_share", "dev_rtf", "passes_on_dev",
            "chosen_on_dev"]
    lines = ["\t".join(cols)]
    for r in sorted(records, key=lambda r: (r["exp"], r["dev"]["mcd"])):
        k = knobs[r["exp"]] or {"criteria": r.get("criterion") or "-"}  # a product of experts has no config.yaml
        vals = [os.path.basename(r["exp"])] + [k.get(c, "-") for c in cols[1:7]] + [
            r.get("init"), r["steps"], r["step_size"], r["sigma"], r.get("normalize_grad"), r.get("min_bin")] + [
            fmt(r["dev"].get(m), 4) for m in ("mcd", "log_f0_rmse", "vde", "gpe", "ffe", "predicted_mos",
                                              "mel_distance", "mcd_silence_share", "rtf")] + [
            passes_on_dev(r, base), best_by_exp[r["exp"]] is r]
        lines.append("\t".join(str(v) for v in vals))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")


def dev_conditions(r, base):
    """The verdict's conditions against Tacotron 2, on dev means: MCD lower, predicted MOS, log-F0 RMSE and FFE no
    worse."""
    d, b = r["dev"], base["dev"]
    return [d["mcd"] < b["mcd"], d["predicted_mos"] >= b["predicted_mos"], d["log_f0_rmse"] <= b["log_f0_rmse"],
            d["ffe"] <= b["ffe"]]


def passes_on_dev(r, base):
    return all(dev_conditions(r, base))


def choose_on_dev(records, base):
    """Each EBM's setting: among the settings that fail the fewest of the verdict's conditions on dev (none, when
    some pass them all), the lowest dev MCD. Lowest dev MCD alone picks settings that win MCD by breaking pitch
    (Langevin noise, or an over-long step, lowers MCD on Griffin-Lim audio while FFE and log-F0 RMSE collapse)."""
    best = {}
    for exp in sorted({r["exp"] for r in records}):
        mine = [r for r in records if r["exp"] == exp]
        best[exp] = min(mine, key=lambda r: (-sum(dev_conditions(r, base)), r["dev"]["mcd"]))
        best[exp]["passes_on_dev"] = passes_on_dev(best[exp], base)
    return best


def fmt(v, nd=3):
    """A table cell: "-" where there is no value, "NaN" where the measure is undefined for every utterance."""
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def paired_ci(a, b, key, n_boot=2000, seed=0):
    """Mean of the per-utterance differences a - b (two :func:`read_scores` tables) and its 95% bootstrap interval
    (utterances resampled)."""
    return bootstrap([a[u][key] - b[u][key] for u in sorted(set(a) & set(b))], n_boot, seed)


#: The measures beside MCD, each a paired difference from Tacotron 2 with its interval: (key, name, digits).
GAMEPROOF = (("predicted_mos", "predicted MOS", 3), ("mel_distance", "mel distance (dB)", 3),
             ("mcd_silence_share", "silence share of MCD", 3))


def diffs_vs_base(rec, base, args):
    """Every metric's per-utterance difference from Tacotron 2 on eval, with its 95% interval, into
    ``rec["eval"]["diff_vs_tacotron2_ci95"]``."""
    if rec is base or rec["eval"] is None:
        return
    mine, theirs = eval_scores(rec, args), eval_scores(base, args)
    rec["eval"]["diff_vs_tacotron2_ci95"] = {c: list(paired_ci(mine, theirs, c)) for c in COLUMNS}


def verdict(best, base, args, f0_refs=None, ctl=None):
    """Beats = lower eval MCD outside the noise (95% paired bootstrap interval below 0), predicted MOS not worse
    outside the noise (its interval not below 0), log-F0 RMSE and FFE no worse, and, with a control (``ctl``, the
    dev-chosen variance scaling), MCD lower than the control's outside the noise. A lower mean that the interval
    does not separate from Tacotron 2's is not a win. With ``f0_refs`` (analyses of the eval references and of
    Tacotron 2), pitch is also compared on common voiced frames."""
    e, b = best["eval"], base["eval"]
    if e is None:
        return (f"**not decoded on {args.eval_set}** at this dev-chosen setting: run stage 6 with "
                f"--ebm_decode_sets {args.eval_set} --ebm_decode_steps {best['steps']} --ebm_decode_step_sizes "
                f"{best['step_size']} --ebm_decode_sigmas {best['sigma']}"
                + (f" --ebm_decode_min_bins {best['min_bin']}" if best.get("min_bin") else "")
                + ", then stage 7 (search.sh does)")
    rel = 100.0 * (e["mcd"] - b["mcd"]) / b["mcd"]
    diffs = e["diff_vs_tacotron2_ci95"]
    # Every condition gets a paired interval: a few frames with gross (octave) errors decide log-F0 RMSE on small
    # sets, so a reader must see whether "worse" is outside the noise.
    for key in ("mcd", "log_f0_rmse", "ffe"):
        best["eval"][f"{key}_diff_ci95"] = diffs[key]
    d, lo, hi = diffs["mcd"]
    if hi < 0:
        sig = "the MCD gain is outside the noise"
    elif lo > 0:
        sig = "the MCD loss is outside the noise"
    else:
        sig = "the MCD difference is within the noise"
    control_text, beats_control = against_control(best, ctl, args)
    wins = {  # NaN (a measure undefined throughout) fails its condition
        "MCD lower outside the noise": hi < 0,
        "predicted MOS not worse outside the noise": bool(diffs["predicted_mos"][2] >= 0),
        "log-F0 RMSE no worse": e["log_f0_rmse"] <= b["log_f0_rmse"],
        "FFE no worse": e["ffe"] <= b["ffe"],
    }
    if beats_control is not None:
        wins["MCD below the control's outside the noise"] = beats_control
    what = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in wins.items())
    if beats_control is None:
        what += "; no variance-scaling control was run (--gv_scales), so sharpening alone was not ruled out"
    beats = all(wins.values())

    def with_ci(key, name, nd):
        m, plo, phi = diffs[key]
        return (f"{name} {e[key]:.{nd}f} vs {b[key]:.{nd}f} (difference {m:+.{nd}f}, 95% interval [{plo:+.{nd}f}, "
                f"{phi:+.{nd}f}])")

    pitch = [with_ci("log_f0_rmse", "log-F0 RMSE", 4), with_ci("ffe", "FFE", 4)]
    text = (f"**{'beats' if beats else 'does not beat'} Tacotron 2** on {best['eval']['n_utts']} eval utterances: "
            f"MCD {e['mcd']:.3f} vs {b['mcd']:.3f} dB ({rel:+.1f}%; per-utterance difference {d:+.3f} dB, "
            f"95% bootstrap interval [{lo:+.3f}, {hi:+.3f}]: {sig}), {with_ci('predicted_mos', 'predicted MOS', 3)}, "
            f"{', '.join(pitch)} ({what}); beside them {with_ci('mel_distance', 'mel distance', 3)} dB, "
            f"{with_ci('mcd_silence_share', 'silence share of MCD', 3)}")
    wav_scp = os.path.join(best["dir"], args.eval_set, f"wav_{args.vocoder_tag}", "wav.scp")
    if f0_refs is not None and os.path.isfile(wav_scp):
        # Log-F0 RMSE counts the frames voiced in both signals: better voicing adds hard frames to it. The same
        # frames for both systems tell pitch accuracy apart from voicing (ebm.bin.compare_f0).
        c = summary(compare(f0_refs[0], [f0_refs[1], Analyses(wav_scp, "EBM", args.n_shift, ref_fs=f0_refs[0],
                                                                   f0_range=f0_refs[0].f0_range)]))
        best["eval"]["common_voiced_f0"] = c
        m, lo, hi = c["diff_ci95"][1]
        text += (f". On the frames voiced in the reference and in both systems, log-F0 RMSE {c['log_f0_rmse'][1]:.4f}"
                 f" vs {c['log_f0_rmse'][0]:.4f} (difference {m:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}]); it "
                 f"voices {c['voiced_share'][1]:.1%} of the reference's voiced frames, Tacotron 2 "
                 f"{c['voiced_share'][0]:.1%}")
    return text + control_text


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
        name = os.path.basename(r["exp"]) + (f" w={r['weights']}" if r.get("weights") else "")
        groups.setdefault((name, r["step_size"], r["sigma"], r.get("min_bin") or 0), []).append(r)
    for n, ((exp, lam, sig, min_bin), rs) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        rs = sorted(rs, key=lambda r: r["steps"])
        xs = [max(r["steps"], 0.5) for r in rs]
        label = f"{exp} lambda={lam} sigma={sig}" + (f" min_bin={min_bin}" if min_bin else "")
        color = f"C{n % 10}"  # one colour per setting in every panel
        axes[0].plot(xs, [r["dev"]["mcd"] for r in rs], "o--", color=color, alpha=0.5, label=f"{label} (dev)")
        ev = [(x, r["eval"]) for x, r in zip(xs, rs) if r["eval"] is not None]  # dev-only search settings: no eval
        if ev:
            axes[0].plot([x for x, _ in ev], [e["mcd"] for _, e in ev], "o-", color=color, label=f"{label} (eval)")
        axes[1].plot(xs, [r["dev"]["log_f0_rmse"] for r in rs], "o--", color=color, label=f"{label} (dev)")
        axes[2].plot(xs, [r["dev"]["rtf"] or np.nan for r in rs], "o--", color=color, label=f"{label} (dev)")
    for ax, key, ylabel, part in ((axes[0], "mcd", "MCD (dB)", "eval"), (axes[1], "log_f0_rmse", "log-F0 RMSE", "dev"),
                                  (axes[2], "rtf", "RTF (Tacotron 2 + Langevin)", "dev")):
        if base[part].get(key) is not None:
            ax.axhline(base[part][key], color="k", ls=":", label=f"Tacotron 2 ({part})")
        if key != "rtf":
            ax.axhline(gt[part][key], color="gray", ls="-.", label=f"analysis-synthesis ({part})")
        if np.all(np.isfinite(ax.dataLim.intervalx)):  # no finite point (a measure NaN throughout): a log axis
            ax.set_xscale("log")                          # cannot be drawn, so the panel stays linear and empty
        ax.set_xlabel("Langevin steps")
        ax.set_ylabel(ylabel)
    axes[3].axis("off")  # the legend gets a panel of its own: a search has many settings
    axes[3].legend(*axes[0].get_legend_handles_labels(), loc="center left", fontsize=6, ncol=1 + len(groups) // 24)
    save(fig, os.path.join(args.plot_dir, "metrics_vs_steps.png"), 100)

    # Energy along the chain (dev, which every setting has; mean over utterances), for the longest decode of each EBM.
    fig, ax = plt.subplots(figsize=(6, 4))
    for exp in sorted({r["exp"] for r in records}):
        longest = max((r for r in records if r["exp"] == exp), key=lambda r: r["steps"])
        efile = os.path.join(longest["dir"], args.dev_set, "energy")
        if not os.path.isfile(efile):
            continue
        with open(efile) as f:
            rows = [np.array([float(v) for v in line.split()[1:]]) for line in f if line.strip()]
        n = min(len(r) for r in rows)
        ax.plot(np.mean([r[:n] for r in rows], axis=0),
                label=f"{os.path.basename(exp)} (lambda={longest['step_size']})")
    ax.set_xlabel("recorded Langevin step")
    ax.set_ylabel("mean energy (dev)")
    ax.legend(fontsize=7)
    save(fig, os.path.join(args.plot_dir, "energy_vs_step.png"), 100)

    # Mels of a few eval utterances: reference (analysis), Tacotron 2, each EBM at its dev-chosen setting.
    from ebm.io import open_feats_scp

    base_scp = os.path.join(base["dir"], args.eval_set, "denorm", "feats.scp")
    if os.path.isfile(base_scp) and args.num_mel_plots > 0:
        base_r = open_feats_scp(base_scp)
        ebm_r = {exp: open_feats_scp(os.path.join(r["dir"], args.eval_set, "denorm", "feats.scp"))
                 for exp, r in best_by_exp.items() if r["eval"] is not None}
        refs = dict(read_scp(args.ref_wav_scp)) if args.ref_wav_scp else {}
        settings = FeatureSettings.from_args(args)
        for key in sorted(base_r.keys())[: args.num_mel_plots]:
            panels = []
            if key in refs:
                panels.append(("reference", settings.logmel(sf.read(refs[key], dtype="float32")[0])))
            panels.append(("Tacotron 2", base_r[key]))
            panels += [(f"{os.path.basename(exp)} ({_steps(best_by_exp[exp]['steps'])})", r[key])
                       for exp, r in ebm_r.items()]
            fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)))
            for ax, (title, mel) in zip(np.atleast_1d(axes), panels):
                ax.imshow(np.asarray(mel).T, origin="lower", aspect="auto", interpolation="none")
                ax.set_title(f"{key}: {title}", fontsize=8)
            save(fig, os.path.join(args.plot_dir, f"mel_{key}.png"), 90)
    return written


def gameproof_cells(r, key, nd):
    """Two cells of the measures' table: the eval mean, and the difference from Tacotron 2 with its interval."""
    e = r["eval"]
    if e is None:
        return "- | -"
    d = (e.get("diff_vs_tacotron2_ci95") or {}).get(key)
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


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    rng = f0_range(args)  # a bad range fails before any work
    _SCORES.clear()  # tables may have been rescored since an earlier call in this process
    gt = system_record("analysis-synthesis", args.ground_truth, args)
    base = system_record("tacotron2", args.baseline, args, params=args.baseline_params)
    records = [ebm_record(d, args, base) for d in args.ebm]
    best_by_exp = choose_on_dev(records, base)
    controls = [control_record(d, args) for d in args.control]
    ctl = choose_on_dev(controls, base)["control_gv"] if controls else None
    for c in controls:
        c["chosen_on_dev"] = c is ctl
    for r in records:
        r["chosen_on_dev"] = best_by_exp[r["exp"]] is r
    for r in [gt] + controls + records:
        diffs_vs_base(r, base, args)
    figures = plots(records, base, gt, best_by_exp, args) if records else []

    cols = ["mcd", "log_f0_rmse", "vde", "gpe", "ffe"]
    head = ("| system | criterion | init | steps | lambda | sigma | min bin | dev MCD | eval MCD | eval log-F0 RMSE | "
            "eval VDE | eval GPE | eval FFE | eval RTF | params |\n|" + "---|" * 15 + "\n")

    def row(r, name):
        e = r["eval"] or {}
        return (f"| {name} | {r.get('criterion') or '-'} | {r.get('init') or '-'} | {fmt(r.get('steps'))} | "
                f"{fmt(r.get('step_size'), 4)} | {fmt(r.get('sigma'), 2)} | {fmt(r.get('min_bin'))} | "
                f"{fmt(r['dev']['mcd'])} | "
                + " | ".join(fmt(e.get(c), 3 if c == "mcd" else 4) for c in cols)
                + f" | {fmt(e.get('rtf'), 3)} | {fmt(r.get('params'))} |\n")

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
             "(`ebm.bin.gv_postfilter`), sharpening without text or energy; the scale is chosen on dev by the same "
             "rule, and each verdict ends with the EBM against it." if controls else "") + "\n\n",
          "## Verdict (eval, at the dev-chosen setting)\n\n"]
    if not records:
        md.append("No EBM decodes were given (stage 6 not run?).\n")
    f0_refs = None
    base_wavs = os.path.join(args.baseline, args.eval_set, f"wav_{args.vocoder_tag}", "wav.scp")
    if args.ref_wav_scp and os.path.isfile(base_wavs):
        ref = Analyses(args.ref_wav_scp, "reference", args.n_shift, f0_range=rng)
        f0_refs = (ref, Analyses(base_wavs, "Tacotron 2", args.n_shift, ref_fs=ref, f0_range=rng))
    verdicts = {exp: verdict(best, base, args, f0_refs, ctl) for exp, best in sorted(best_by_exp.items())}
    for exp, best in sorted(best_by_exp.items()):
        how = "" if best["passes_on_dev"] else " (no setting met all four conditions on dev)"
        md.append(f"- `{os.path.basename(exp)}` ({best['criterion']}; {_steps(best['steps'])}, lambda "
                  f"{best['step_size']}, sigma {best['sigma']}, "
                  + (f"drift from mel bin {best['min_bin']}, " if best.get("min_bin") else "")
                  + f"from {best['init']}{how}): {verdicts[exp]}\n")
    if ctl is not None and ctl["eval"] is not None:
        e, b = ctl["eval"], base["eval"]
        md.append(f"- control: Tacotron 2 with its {ctl['criterion']} (the scale chosen on dev): MCD {e['mcd']:.3f} vs "
                  f"{b['mcd']:.3f} dB ({100.0 * (e['mcd'] - b['mcd']) / b['mcd']:+.1f}%), predicted MOS "
                  f"{e['predicted_mos']:.3f} vs {b['predicted_mos']:.3f}, log-F0 RMSE "
                  f"{e['log_f0_rmse']:.4f} vs {b['log_f0_rmse']:.4f}, FFE {e['ffe']:.4f} vs {b['ffe']:.4f}\n")
    named = [(gt, "analysis-synthesis"), (base, "Tacotron 2")]
    for c in sorted(controls, key=lambda c: c["scale"] or 0):
        name = f"Tacotron 2 + {c['criterion']} (control)"
        named.append((c, f"**{name}**" if c["chosen_on_dev"] else name))
    for r in sorted(records, key=lambda r: (r["exp"], r["step_size"], r["sigma"], r.get("min_bin") or 0, r["steps"])):
        name = f"EBM `{os.path.basename(r['exp'])}`"
        named.append((r, f"**{name}**" if r["chosen_on_dev"] else name))
    md += ["\n## All systems\n\n", head] + [row(r, name) for r, name in named]
    md += ["\n## Measures a vocoder cannot game (eval)\n\nEach system's mean, then its per-utterance difference from "
           "Tacotron 2 with the 95% paired bootstrap interval.\n\n",
           "| system | steps | lambda | "
           + " | ".join(f"{name} | difference [95% interval]" for _, name, _ in GAMEPROOF)
           + " |\n|" + "---|" * (3 + 2 * len(GAMEPROOF)) + "\n"]
    for r, name in named:
        md.append(f"| {name} | {fmt(r.get('steps'))} | {fmt(r.get('step_size'), 4)} | "
                  + " | ".join(gameproof_cells(r, key, nd) for key, _, nd in GAMEPROOF) + " |\n")
    md.append("\nPer-utterance scores: `<decode dir>/<set>/scores_" + args.vocoder_tag + ".tsv`; plots: "
              + ", ".join(f"`{os.path.relpath(p, os.path.dirname(os.path.abspath(args.output_md)))}`"
                          for p in figures) + "\n")
    write_atomic(args.output_md, "".join(md))

    def js(r):
        out = {k: r.get(k) for k in ("system", "criterion", "init", "steps", "step_size", "sigma", "min_bin", "params",
                                     "scale")}
        out["lambda"] = out.pop("step_size")
        ebm = r.get("exp") and r["system"] == "ebm"
        out["exp"] = os.path.basename(r["exp"]) if ebm else None
        out["decode"] = os.path.basename(os.path.normpath(r["dir"])) if r.get("exp") else None
        out["chosen_on_dev"] = r.get("chosen_on_dev", False)
        out["vocoder"] = args.vocoder_tag
        for part in ("eval", "dev"):
            out[part] = dict(r[part]) if r[part] is not None else None
        for k in ("mcd", "log_f0_rmse", "ffe", "rtf") + tuple(key for key, _, _ in GAMEPROOF):
            out[k] = (r["eval"] or {}).get(k)
        return out

    records_json = [js(gt), js(base)] + [js(c) for c in controls] + [js(r) for r in records]
    write_atomic(args.output_json, json.dumps(nan_to_null(records_json), indent=1, allow_nan=False) + "\n")
    if args.search_log and records:
        write_search_log(records, best_by_exp, base, args.search_log)
        logging.info(f"wrote {args.search_log}: {len(records)} settings with their dev numbers")
    logging.info(f"wrote {args.output_md}, {args.output_json} and {len(figures)} plots in {args.plot_dir}")
    for exp, text in verdicts.items():
        logging.info(f"{os.path.basename(exp)}: " + re.sub(r"\*\*", "", text))


if __name__ == "__main__":
    run(main)
