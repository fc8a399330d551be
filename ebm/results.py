"""The results table's records and rules: what a system scored, which EBM setting dev chooses, and the verdict.

``ebm.bin.make_results`` reads stage 7's tables into :class:`SystemRecord` (one per system: analysis-synthesis,
Tacotron 2, a variance-scaling control, one Langevin decode), each with its dev and eval :class:`Numbers`. The
rules are functions that return what they computed and write into no record: :func:`choose_on_dev` picks each
EBM's setting and :func:`choose_control_on_dev` the control's scale, :func:`verdict` says whether the chosen
setting beats Tacotron 2 on eval and returns its intervals, :func:`against_control` compares it with the chosen
control. The writers of RESULTS.md, RESULTS.json and the search log combine records and verdicts, so what they
write does not depend on the order in which the rules ran; :func:`verdict_at_a_glance` turns RESULTS.json's
records back into the verdict's table, which RESULTS.md and the listening page both show; :func:`reproduction`
compares two runs' RESULTS.json.

The verdict says "beats" only when every one of these holds on eval: MCD lower outside the noise (the 95% paired
bootstrap interval of the per-utterance difference below 0); predicted MOS not worse outside the noise (its
interval not below 0); log-F0 RMSE and FFE no worse; and, when a variance-scaling control was run, MCD lower than
the control's outside the noise. Dev chooses with the same conditions on dev means.
"""

import json
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

import numpy as np
import yaml

from ebm.cli import EbmError
from ebm.scoring import COLUMNS, bootstrap, compare_tracks, f0_tracks_path, read_f0_tracks, read_scores, summary


@dataclass
class Numbers:
    """One system's means over one set's utterances (NaN: undefined for every utterance) and its cost."""

    mcd: float
    log_f0_rmse: float
    vde: float
    gpe: float
    ffe: float
    mel_distance: float
    mcd_silence_share: float
    predicted_mos: float
    n_utts: int
    rtf: Optional[float] = None  # an EBM's: Tacotron 2's plus Langevin's
    rtf_refine: Optional[float] = None  # an EBM's Langevin alone
    split_cost: bool = False  # rtf_refine is reported (an EBM)
    #: eval only: each metric's per-utterance difference from Tacotron 2, [mean, low, high] of the 95% interval
    diff_vs_tacotron2_ci95: Optional[Dict[str, List[float]]] = None

    def get(self, key):
        return getattr(self, key, None)

    def to_dict(self) -> dict:
        out = {c: getattr(self, c) for c in COLUMNS}
        out["n_utts"] = self.n_utts
        out["rtf"] = self.rtf
        if self.split_cost:
            out["rtf_refine"] = self.rtf_refine
        if self.diff_vs_tacotron2_ci95 is not None:
            out["diff_vs_tacotron2_ci95"] = self.diff_vs_tacotron2_ci95
        return out


@dataclass
class SystemRecord:
    """One row of the results: a system's identity, its decoding knobs (EBMs, controls) and its numbers."""

    system: str  # "analysis-synthesis", "tacotron2", "control_gv" or "ebm"
    dir: str
    dev: Numbers
    eval: Optional[Numbers]  # None: decoded on dev only (a search setting)
    exp: Optional[str] = None  # an EBM's exp dir; "control_gv" for controls (the group dev chooses within)
    criterion: Optional[str] = None
    init: Optional[str] = None
    steps: Optional[int] = None
    step_size: Optional[float] = None
    sigma: Optional[float] = None
    normalize_grad: Optional[bool] = None
    min_bin: Optional[int] = None
    noise_level_max: Optional[float] = None  # where an annealed chain started (noise-conditional EBMs)
    params: Optional[int] = None
    weights: Optional[str] = None  # a product of experts' weights, "w1/w2"
    scale: Optional[float] = None  # a control's variance scale


@dataclass
class Verdict:
    """What :func:`verdict` found for one EBM's dev-chosen setting."""

    text: str
    beats: Optional[bool] = None  # None: not decoded on eval
    diff_ci95: Dict[str, List[float]] = field(default_factory=dict)  # mcd, log_f0_rmse, ffe vs Tacotron 2
    vs_control_ci95: Optional[List[float]] = None  # eval MCD minus the chosen control's
    common_voiced_f0: Optional[dict] = None  # ebm.scoring.summary on the frames voiced in all
    conditions: Dict[str, bool] = field(default_factory=dict)  # each of CONDITIONS that was judged: held?

    def eval_extra(self) -> dict:
        """The verdict's numbers as RESULTS.json adds them to the chosen setting's eval entry."""
        out = {f"{k}_diff_ci95": v for k, v in self.diff_ci95.items()}
        if self.vs_control_ci95 is not None:
            out["mcd_diff_vs_control_ci95"] = self.vs_control_ci95
        if self.common_voiced_f0 is not None:
            out["common_voiced_f0"] = self.common_voiced_f0
        if self.conditions:
            out["verdict_conditions"] = dict(self.conditions)
        return out


# --- reading stage 7's tables ------------------------------------------------------------------------------------

def check_f0_range(path, f0min, f0max):
    """Scores made with another F0 search range than the one this table states would be mixed in silently; stage
    7 records its scoring options beside each table (``scores_<tag>.settings``; absent in older runs)."""
    record = path[:-len(".tsv")] + ".settings"
    if not os.path.isfile(record):
        return
    with open(record) as f:
        tokens = f.read().split()
    used = dict(zip(tokens[::2], tokens[1::2]))
    for opt, want in (("--f0min", f0min), ("--f0max", f0max)):
        if opt in used and float(used[opt]) != want:
            raise EbmError(f"{path} was scored with {opt} {used[opt]}, but this table is for {opt} "
                           f"{want:g}: rerun stage 7 with the same --f0min/--f0max")


def nanmean(values):
    """Mean without NaNs; NaN (no warning) when every value is NaN, e.g. log-F0 RMSE with no frame voiced in both."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if len(values) else float("nan")


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


class ScoreTables:
    """Stage 7's per-utterance tables of one results run (``<dir>/<set>/scores_<tag>.tsv``), each read once; a
    table from before a metric existed is refused."""

    def __init__(self, dev_set, eval_set, vocoder_tag, f0min, f0max, fs, n_shift):
        self.dev_set, self.eval_set, self.vocoder_tag = dev_set, eval_set, vocoder_tag
        self.f0min, self.f0max, self.fs, self.n_shift = f0min, f0max, fs, n_shift
        self._cache = {}

    def path(self, sysdir, dset):
        return os.path.join(sysdir, dset, f"scores_{self.vocoder_tag}.tsv")

    def scores(self, path):
        if path not in self._cache:
            if not os.path.isfile(path):
                raise EbmError(f"{path} is missing: rerun stage 7 (its vocoding and scoring) for this system")
            scores = read_scores(path)
            if not scores:
                raise EbmError(f"{path} has no utterances")
            lacking = [c for c in COLUMNS if c not in next(iter(scores.values()))]
            if lacking:
                raise EbmError(f"{path} lacks the columns {', '.join(lacking)} (scored by an older stage 7): rerun "
                               "stage 7, which rescores it")
            self._cache[path] = scores
        return self._cache[path]

    def eval_scores(self, rec: SystemRecord):
        return self.scores(self.path(rec.dir, self.eval_set))

    def numbers(self, sysdir, dset) -> Numbers:
        path = self.path(sysdir, dset)
        if os.path.isfile(path):
            check_f0_range(path, self.f0min, self.f0max)
        scores = self.scores(path)
        means = {c: nanmean([s[c] for s in scores.values()]) for c in COLUMNS}
        return Numbers(**means, n_utts=len(scores), rtf=rtf(os.path.join(sysdir, dset, "rtf"), self.fs, self.n_shift))

    def system(self, name, sysdir, eval_optional=False, with_eval=True, **extra) -> SystemRecord:
        """One system's record. ``eval_optional``: a setting without eval scores is a dev-only one (a search
        setting, or one stage 7 did not evaluate because dev chose another); ``with_eval=False``: dev only."""
        ev = None
        if with_eval and not (eval_optional and not os.path.isfile(self.path(sysdir, self.eval_set))):
            ev = self.numbers(sysdir, self.eval_set)
        return SystemRecord(system=name, dir=sysdir, dev=self.numbers(sysdir, self.dev_set), eval=ev, **extra)

    def ebm(self, ddir, baseline: SystemRecord, with_eval=True) -> SystemRecord:
        settings_file = os.path.join(ddir, "settings.yaml")
        if not os.path.isfile(settings_file):
            raise EbmError(f"{settings_file} is missing: rerun stage 6 for {ddir}")
        with open(settings_file) as f:
            st = yaml.safe_load(f)
        rec = self.system("ebm", ddir, eval_optional=True, with_eval=with_eval,
                          exp=os.path.dirname(os.path.normpath(ddir)),
                          criterion=st.get("criterion"), init=st.get("init"), steps=st["sampler"]["steps"],
                          step_size=st["sampler"]["step_size"], sigma=st["sampler"]["sigma"],
                          normalize_grad=st["sampler"].get("normalize_grad"),
                          min_bin=st["sampler"].get("drift_min_bin", 0),
                          noise_level_max=st["sampler"].get("noise_level_max"), params=st.get("params"),
                          weights="/".join(f"{e['weight']:g}" for e in st["experts"]) if st.get("experts") else None)
        for part, base in ((rec.dev, baseline.dev), (rec.eval, baseline.eval)):
            if part is None:  # refinement cost on its own, and the whole system's (Tacotron 2 + Langevin)
                continue
            r, b = part.rtf, base.rtf
            part.rtf_refine, part.split_cost = r, True
            part.rtf = (r + b) if (r is not None and b is not None) else r
        return rec

    def control(self, cdir, with_eval=True) -> SystemRecord:
        """A variance-scaled Tacotron 2 (``<base>_gv<scale>``); its cost is Tacotron 2's."""
        m = re.search(r"_gv([0-9.]+)$", os.path.normpath(cdir))
        scale = float(m.group(1)) if m else None
        return self.system("control_gv", cdir, eval_optional=True, with_eval=with_eval, exp="control_gv", scale=scale,
                           criterion=f"variance x{scale:g}" if scale is not None else "variance scaling")

    def with_diffs(self, rec: SystemRecord, base: SystemRecord) -> SystemRecord:
        """``rec`` with every metric's per-utterance difference from Tacotron 2 on eval and its 95% interval
        (Tacotron 2 itself and a dev-only setting have none)."""
        if rec is base or rec.eval is None:
            return rec
        mine, theirs = self.eval_scores(rec), self.eval_scores(base)
        diffs = {c: list(paired_ci(mine, theirs, c)) for c in COLUMNS}
        return replace(rec, eval=replace(rec.eval, diff_vs_tacotron2_ci95=diffs))


def paired_ci(a, b, key, n_boot=2000, seed=0):
    """Mean of the per-utterance differences a - b (two :func:`ebm.scoring.read_scores` tables) and its 95%
    bootstrap interval (utterances resampled)."""
    return bootstrap([a[u][key] - b[u][key] for u in sorted(set(a) & set(b))], n_boot, seed)


# --- the rules ---------------------------------------------------------------------------------------------------

#: The verdict's conditions on eval, in the order every writer lists them: key, what holds when it passes, a short
#: column header, and the interval that shows it (a key of its differences from Tacotron 2 in the chosen setting's
#: eval entry of RESULTS.json, or an ``*_ci95`` key of that entry) with its decimals. "vs_control" is judged only
#: when a control was run.
CONDITIONS = [
    ("mcd", "MCD lower outside the noise", "MCD", "mcd", 3),
    ("predicted_mos", "predicted MOS not worse outside the noise", "predicted MOS", "predicted_mos", 3),
    ("log_f0_rmse", "log-F0 RMSE no worse", "log-F0 RMSE", "log_f0_rmse", 4),
    ("ffe", "FFE no worse", "FFE", "ffe", 4),
    ("vs_control", "MCD below the control's outside the noise", "MCD vs control", "mcd_diff_vs_control_ci95", 3),
]


def dev_conditions(r: SystemRecord, base: SystemRecord) -> List[bool]:
    """The verdict's conditions against Tacotron 2, on dev means: MCD lower, predicted MOS, log-F0 RMSE and FFE no
    worse (NaN fails its condition)."""
    d, b = r.dev, base.dev
    return [d.mcd < b.mcd, d.predicted_mos >= b.predicted_mos, d.log_f0_rmse <= b.log_f0_rmse, d.ffe <= b.ffe]


def passes_on_dev(r: SystemRecord, base: SystemRecord) -> bool:
    return all(dev_conditions(r, base))


def choose_on_dev(records: List[SystemRecord], base: SystemRecord) -> Dict[str, SystemRecord]:
    """Each group's (``exp``'s) setting: among the settings that fail the fewest of the verdict's conditions on dev
    (none, when some pass them all), the lowest dev MCD; on a tie, the first given. Lowest dev MCD alone picks
    settings that win MCD by breaking pitch (Langevin noise, or an over-long step, lowers MCD on Griffin-Lim audio
    while FFE and log-F0 RMSE collapse)."""
    best = {}
    for exp in sorted({r.exp for r in records}):
        mine = [r for r in records if r.exp == exp]
        best[exp] = min(mine, key=lambda r: (-sum(dev_conditions(r, base)), r.dev.mcd))
    return best


def choose_control_on_dev(controls: List[SystemRecord]) -> SystemRecord:
    """The control's scale: the lowest dev MCD. The control stands for what sharpening alone does to MCD, and the
    verdict's last condition asks the EBM to beat it there, so dev picks its strongest scale on that measure. The
    EBMs' rule (fewest failed conditions first) would pick the scale that predicted MOS and the pitch measures like,
    which sharpening helps only at MCD's expense, and so make that condition easy to pass."""
    return min(controls, key=lambda r: r.dev.mcd)


def against_control(best: SystemRecord, ctl: Optional[SystemRecord], tables: ScoreTables):
    """The EBM's eval MCD against the dev-chosen control's, with the paired interval: what the energy adds to
    sharpening. Returns ``(text, beats, [d, lo, hi])``; ``beats`` and the interval are None when there is no
    control to compare with."""
    if ctl is None or best.eval is None or ctl.eval is None:
        return "", None, None
    d, lo, hi = paired_ci(tables.eval_scores(best), tables.eval_scores(ctl), "mcd")
    e, c = best.eval, ctl.eval
    outcome = "beats it" if hi < 0 else ("is worse" if lo > 0 else "is within the noise of it")
    return (f". Against the control ({ctl.criterion}, chosen on dev): MCD {e.mcd:.3f} vs {c.mcd:.3f} "
            f"(per-utterance difference {d:+.3f} dB, 95% interval [{lo:+.3f}, {hi:+.3f}]: the EBM {outcome}), "
            f"predicted MOS {e.predicted_mos:.3f} vs {c.predicted_mos:.3f}, log-F0 RMSE "
            f"{e.log_f0_rmse:.4f} vs {c.log_f0_rmse:.4f}, FFE {e.ffe:.4f} vs {c.ffe:.4f}"), hi < 0, [d, lo, hi]


#: The measures of :data:`REPRODUCED` where higher is better (for the rest, lower is).
HIGHER_IS_BETTER = {"predicted_mos"}


def convergence_check(base: SystemRecord, two_thirds: SystemRecord, tables: ScoreTables):
    """Had Tacotron 2 levelled off? Tacotron 2 as compared against the same training stopped two thirds of the way
    (the model selected then), both decoded free-running on dev the same way. The dev-loss rule watches a
    teacher-forced loss that levels off before free-running quality does, so the extension past it is checked on
    the measures the verdict judges: one that still improved over the last third says the baseline had not
    converged.

    Returns ``(rows, improved)``: per measure of :data:`REPRODUCED` (the recipes' tables) ``{"key", "two_thirds",
    "trained_on", "diff_ci95": [mean, low, high] of the per-utterance difference (trained on minus two thirds),
    "outcome": "better" | "worse" | "within the noise"}``, and the names of the measures better outside the noise."""
    mine = tables.scores(tables.path(base.dir, tables.dev_set))
    theirs = tables.scores(tables.path(two_thirds.dir, tables.dev_set))
    if set(mine) != set(theirs):
        raise EbmError(f"{tables.path(two_thirds.dir, tables.dev_set)} scores other utterances than "
                       f"{tables.path(base.dir, tables.dev_set)}: rerun stages 4 and 7")
    rows, improved = [], []
    for key, name, _ in REPRODUCED:
        d, lo, hi = paired_ci(mine, theirs, key)
        better, worse = (lo > 0, hi < 0) if key in HIGHER_IS_BETTER else (hi < 0, lo > 0)
        outcome = "better" if better else ("worse" if worse else "within the noise")
        rows.append({"key": key, "two_thirds": two_thirds.dev.get(key), "trained_on": base.dev.get(key),
                     "diff_ci95": [d, lo, hi], "outcome": outcome})
        if better:
            improved.append(name)
    return rows, improved


def verdict(best: SystemRecord, base: SystemRecord, tables: ScoreTables,
            ctl: Optional[SystemRecord] = None) -> Verdict:
    """Beats = lower eval MCD outside the noise (95% paired bootstrap interval below 0), predicted MOS not worse
    outside the noise (its interval not below 0), log-F0 RMSE and FFE no worse, and, with a control (``ctl``, the
    dev-chosen variance scaling), MCD lower than the control's outside the noise. A lower mean that the interval
    does not separate from Tacotron 2's is not a win. Pitch is also compared on the frames voiced in the reference
    and in both systems, from the F0 tracks that scoring wrote beside the eval tables. ``best.eval`` must carry its
    differences from Tacotron 2 (:meth:`ScoreTables.with_diffs`)."""
    e, b, eval_set = best.eval, base.eval, tables.eval_set
    if e is None:
        if os.path.isdir(os.path.join(best.dir, eval_set)):
            return Verdict(f"**not scored on {eval_set}** at this dev-chosen setting: rerun stage 7, which "
                           "vocodes and scores eval at each dev choice")
        return Verdict(f"**not decoded on {eval_set}** at this dev-chosen setting: run stage 6 with "
                       f"--ebm_decode_like {best.dir} --ebm_decode_sets {eval_set}, then stage 7 (search.sh does)")
    rel = 100.0 * (e.mcd - b.mcd) / b.mcd
    diffs = e.diff_vs_tacotron2_ci95
    # Every condition gets a paired interval: a few frames with gross (octave) errors decide log-F0 RMSE on small
    # sets, so a reader must see whether "worse" is outside the noise.
    diff_ci95 = {key: diffs[key] for key in ("mcd", "log_f0_rmse", "ffe")}
    d, lo, hi = diffs["mcd"]
    if hi < 0:
        sig = "the MCD gain is outside the noise"
    elif lo > 0:
        sig = "the MCD loss is outside the noise"
    else:
        sig = "the MCD difference is within the noise"
    control_text, beats_control, vs_control = against_control(best, ctl, tables)
    wins = {  # NaN (a measure undefined throughout) fails its condition
        "mcd": bool(hi < 0),
        "predicted_mos": bool(diffs["predicted_mos"][2] >= 0),
        "log_f0_rmse": bool(e.log_f0_rmse <= b.log_f0_rmse),
        "ffe": bool(e.ffe <= b.ffe),
    }
    if beats_control is not None:
        wins["vs_control"] = bool(beats_control)
    labels = {key: label for key, label, _, _, _ in CONDITIONS}
    what = ", ".join(f"{labels[k]}: {'yes' if v else 'NO'}" for k, v in wins.items())
    if beats_control is None:
        what += "; no variance-scaling control was run (--gv_scales), so sharpening alone was not ruled out"
    beats = all(wins.values())

    def with_ci(key, name, nd):
        m, plo, phi = diffs[key]
        return (f"{name} {getattr(e, key):.{nd}f} vs {getattr(b, key):.{nd}f} (difference {m:+.{nd}f}, 95% interval "
                f"[{plo:+.{nd}f}, {phi:+.{nd}f}])")

    pitch = [with_ci("log_f0_rmse", "log-F0 RMSE", 4), with_ci("ffe", "FFE", 4)]
    text = (f"**{'beats' if beats else 'does not beat'} Tacotron 2** on {e.n_utts} eval utterances: "
            f"MCD {e.mcd:.3f} vs {b.mcd:.3f} dB ({rel:+.1f}%; per-utterance difference {d:+.3f} dB, "
            f"95% bootstrap interval [{lo:+.3f}, {hi:+.3f}]: {sig}), {with_ci('predicted_mos', 'predicted MOS', 3)}, "
            f"{', '.join(pitch)} ({what}); beside them {with_ci('mel_distance', 'mel distance', 3)} dB, "
            f"{with_ci('mcd_silence_share', 'silence share of MCD', 3)}")
    # Log-F0 RMSE counts the frames voiced in both signals: better voicing adds hard frames to it. The same
    # frames for both systems tell pitch accuracy apart from voicing (ebm.bin.compare_f0 does it from wavs).
    paths = [f0_tracks_path(tables.path(r.dir, eval_set)) for r in (base, best)]
    common = summary(compare_tracks([read_f0_tracks(p) for p in paths], paths))
    m, lo, hi = common["diff_ci95"][1]
    text += (f". On the frames voiced in the reference and in both systems, log-F0 RMSE "
             f"{common['log_f0_rmse'][1]:.4f} vs {common['log_f0_rmse'][0]:.4f} (difference {m:+.4f}, 95% "
             f"interval [{lo:+.4f}, {hi:+.4f}]); it voices {common['voiced_share'][1]:.1%} of the reference's "
             f"voiced frames, Tacotron 2 {common['voiced_share'][0]:.1%}")
    return Verdict(text + control_text, beats, diff_ci95, vs_control, common, wins)


def _steps_label(r: dict) -> str:
    steps = r.get("steps")
    return f"{steps} step{'' if steps == 1 else 's'}, lambda {r.get('lambda')}"


def verdict_at_a_glance(records: List[dict]) -> List[dict]:
    """The verdict of each dev-chosen EBM as table rows, from RESULTS.json's records (as make_results writes them):
    ``{"exp", "setting", "beats", "cells": [(text, held or None), ...]}``, one cell per entry of CONDITIONS, each the
    per-utterance difference with its 95% interval (MCD's also relative to Tacotron 2's mean). The dev-chosen
    control comes as a row of its own (``beats`` None, nothing judged), to show what sharpening alone gains.
    RESULTS.md and the listening page both show this table, so that a reader sees which condition failed without
    reading the verdict's sentence. Records written before the verdict stored its conditions give no rows."""
    base = next((r.get("eval") for r in records if r.get("system") == "tacotron2"), None) or {}
    rows = []
    for r in records:
        e = r.get("eval") if isinstance(r.get("eval"), dict) else {}
        held = e.get("verdict_conditions")
        control = r.get("system") == "control_gv"
        if control and r.get("chosen_on_dev") and e.get("diff_vs_tacotron2_ci95"):
            held = {}  # shown for comparison: sharpening's gain, nothing judged
        elif r.get("system") != "ebm" or not r.get("chosen_on_dev") or not isinstance(held, dict):
            continue
        diffs = e.get("diff_vs_tacotron2_ci95") or {}
        cells = []
        for key, _, _, source, nd in CONDITIONS:
            ci = e.get(source) if source.endswith("_ci95") else diffs.get(source)
            if (key not in held and not control) or not isinstance(ci, list) or len(ci) != 3:
                cells.append(("-", None))
                continue
            if any(v is None or v != v for v in ci):  # JSON writes NaN as null
                text = "NaN"
            else:
                text = f"{ci[0]:+.{nd}f} [{ci[1]:+.{nd}f}, {ci[2]:+.{nd}f}]"
                if key == "mcd" and base.get("mcd") and e.get("mcd") is not None:  # the target is relative
                    text += f" ({100.0 * (e['mcd'] - base['mcd']) / base['mcd']:+.1f}%)"
            cells.append((text, bool(held[key]) if key in held else None))
        if control:
            rows.append({"exp": "", "setting": f"control: Tacotron 2, {r.get('criterion')}", "beats": None,
                         "cells": cells})
            continue
        steps = r.get("steps")
        setting = f"{_steps_label(r)}, sigma {r.get('sigma')}" if steps is not None else ""
        rows.append({"exp": r.get("exp") or "", "setting": setting, "beats": all(held.values()), "cells": cells})
    return rows if any(row["beats"] is not None for row in rows) else []


def load_records(path) -> List[dict]:
    """RESULTS.json's rows (one dict per system), as ``ebm.bin.make_results`` writes them."""
    if not os.path.isfile(path):
        raise EbmError(f"{path} does not exist: run stage 7 (its make_results writes RESULTS.json)")
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except json.JSONDecodeError as e:
        raise EbmError(f"{path} is not valid JSON ({e}): rerun stage 7")
    if not isinstance(records, list) or not all(isinstance(r, dict) and "system" in r for r in records):
        raise EbmError(f"{path} is not a RESULTS.json (a list of system records): rerun stage 7")
    return records


#: What a reproduction check compares, in the order of the recipes' README tables: key, header and decimals.
REPRODUCED = [("mcd", "MCD", 3), ("log_f0_rmse", "log-F0 RMSE", 4), ("ffe", "FFE", 3),
              ("predicted_mos", "predicted MOS", 3), ("mel_distance", "mel distance (dB)", 3)]


def _roles(records: List[dict]) -> Dict[str, dict]:
    """The rows a recipe's table shows, keyed by what they are rather than by their setting (a rerun's dev search
    may choose another one): analysis-synthesis, Tacotron 2, the dev-chosen control, each EBM's dev-chosen setting."""
    out = {}
    for r in records:
        system = r.get("system")
        if system in ("analysis-synthesis", "tacotron2"):
            out.setdefault(system, r)
        elif system == "control_gv" and r.get("chosen_on_dev"):
            out.setdefault("control", r)
        elif system == "ebm" and r.get("chosen_on_dev"):
            out.setdefault(f"ebm {r.get('exp')}", r)
    return out


def _setting(r: dict) -> str:
    if r.get("system") == "control_gv":
        return f"x{r.get('scale')}"
    if r.get("steps") is not None:
        return _steps_label(r)
    return "-"


def reproduction(committed: List[dict], rerun: List[dict], split: str = "eval") -> List[dict]:
    """Compare a rerun's RESULTS.json records with the committed ones, row by row of the table (:func:`_roles`).

    Each row: ``{"role", "settings": (committed, rerun), "cells": [(key, committed, rerun, inside, committed_ci,
    rerun_diff), ...]}`` with the two runs' means of ``split``, their differences from Tacotron 2 ([mean, low,
    high], None for Tacotron 2's row and on dev) and, for every row but Tacotron 2's, ``inside``: whether the rerun's
    per-utterance difference from its own Tacotron 2 lies in the committed run's 95% interval of that difference
    (None where either run has no interval, as on dev). The differences are what the recipes' verdicts rest on,
    and they carry intervals; the absolute numbers do not (the two runs' per-utterance scores are not stored
    together), so they are shown for reading, not judged. Analysis-synthesis is the same in both runs, so its
    row's differences are the check of Tacotron 2 itself. A role scored in one run only comes as a row with no
    cells (``settings`` names the run that has it), so that a missing EBM or control is seen."""
    a, b = _roles(committed), _roles(rerun)
    rows = []
    for role in list(a) + [r for r in b if r not in a]:
        ra, rb = a.get(role), b.get(role)
        ea, eb = (ra or {}).get(split), (rb or {}).get(split)
        if not isinstance(ea, dict) or not isinstance(eb, dict):
            if isinstance(ea, dict) or isinstance(eb, dict):
                rows.append({"role": role, "cells": [],
                             "settings": (_setting(ra) if ra else "not run", _setting(rb) if rb else "not run")})
            continue
        cells = []
        for key, _, _ in REPRODUCED:
            ci = (ea.get("diff_vs_tacotron2_ci95") or {}).get(key)
            diff = (eb.get("diff_vs_tacotron2_ci95") or {}).get(key)
            inside = None
            if isinstance(ci, list) and isinstance(diff, list) and None not in ci + diff[:1]:
                inside = bool(ci[1] <= diff[0] <= ci[2])
            cells.append((key, ea.get(key), eb.get(key), inside, ci, diff))
        rows.append({"role": role, "settings": (_setting(ra), _setting(rb)), "cells": cells})
    return rows
