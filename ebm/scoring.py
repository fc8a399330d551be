"""What the scoring entry points share: the scores table, the F0 search range, per-system analyses and the
paired bootstrap.

Stage 7 (``ebm.bin.score_wavs``) writes one table per system with :data:`COLUMNS`; ``ebm.bin.make_results``
reads them back with :func:`read_scores`. Beside each table it writes the system's F0 carried onto the
reference's frames (:func:`write_f0_tracks`, :func:`f0_tracks_path`), so that the results' pitch comparison on
common voiced frames (:func:`compare_tracks`) needs no second WORLD analysis. The F0 range options are named as
in ESPnet's ``evaluate_f0.py`` and checked once here, because an octave error of the tracker decides log-F0 RMSE.
:class:`Analyses` and :func:`compare` (from wavs, ``ebm.bin.compare_f0``) or :func:`compare_tracks` (from the
stored tracks, the results' verdict) and :func:`summary` score several systems on the frames they all voice.
"""

import logging
import math
import os

import numpy as np

from ebm.audio import read_wav
from ebm.cli import EbmError
from ebm.io import read_scp, write_atomic

COLUMNS = ("mcd", "log_f0_rmse", "vde", "gpe", "ffe", "mel_distance", "mcd_silence_share", "predicted_mos")

#: MEL_SCP of a system whose mel is the reference's own (analysis-synthesis).
REFERENCE_MEL = "reference"


def add_f0_range(p):
    """The pitch tracker's search range, named as in ESPnet's ``evaluate_f0.py``: set it to the speaker's."""
    p.add_argument("--f0min", type=float, default=40.0, help="lowest F0 WORLD harvest may find (Hz)")
    p.add_argument("--f0max", type=float, default=800.0, help="highest F0 WORLD harvest may find (Hz)")


def f0_range(args):
    """``(f0min, f0max)`` checked: octave errors of the tracker decide log-F0 RMSE, so a bad range must not pass."""
    if not 0 < args.f0min < args.f0max:
        raise EbmError(f"the F0 search range --f0min {args.f0min:g} --f0max {args.f0max:g} is empty or negative; "
                       "give 0 < f0min < f0max in Hz (e.g. 40 and 800, or the speaker's range)")
    return args.f0min, args.f0max


def read_scores(path):
    """``{utt: {metric: value}}`` from a table written by ``ebm.bin.score_wavs``."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        return {parts[0]: {c: float(v) for c, v in zip(header[1:], parts[1:])}
                for parts in (line.rstrip("\n").split("\t") for line in f if line.strip())}


def f0_tracks_path(scores_path):
    """Where the F0 tracks of a scores table (``.../scores_<tag>.tsv`` or a job's ``scores.N.J.tsv``) are."""
    if not scores_path.endswith(".tsv"):
        raise EbmError(f"{scores_path}: a scores table's name ends in .tsv")
    return scores_path[:-len(".tsv")] + ".f0.tsv"


F0_TRACKS_HEADER = "utt\tref_f0\tf0\n"


def write_f0_tracks(path, rows):
    """``rows``: ``(utt, ref_f0, f0)``, the reference's F0 on its frames and the system's carried onto them
    (:func:`ebm.metrics.f0_on_ref_frames`), in Hz, 0 unvoiced; written exactly (shortest round-trip decimals)."""
    def vec(v):
        return " ".join(repr(float(x)) for x in v)

    write_atomic(path, F0_TRACKS_HEADER + "".join(f"{k}\t{vec(r)}\t{vec(g)}\n" for k, r, g in rows))


def read_f0_tracks(path):
    """``{utt: (ref_f0, f0)}`` from :func:`write_f0_tracks`; a missing file names the stage that writes it."""
    if not os.path.isfile(path):
        raise EbmError(f"{path} is missing (written by stage 7's scoring since the F0 tracks were added): rerun "
                       "stage 7, which rescores the systems that lack it")
    with open(path) as f:
        if f.readline() != F0_TRACKS_HEADER:
            raise EbmError(f"{path} is not an F0 track table (header {F0_TRACKS_HEADER.strip()!r}); rerun stage 7")
        out = {}
        for n, line in enumerate(f, 2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise EbmError(f"{path} line {n}: expected utt, ref_f0 and f0; rerun stage 7")
            out[parts[0]] = tuple(np.array(p.split(), dtype=np.float64) for p in parts[1:])
    return out


def bootstrap(d, n_boot=2000, seed=0):
    """Mean of ``d`` (NaNs dropped) and its 95% bootstrap interval."""
    d = np.asarray([x for x in d if not math.isnan(x)])
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = d[np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


class Analyses:
    """WORLD/mel-cepstral analyses of one wav.scp, each utterance analysed once however often it is compared."""

    def __init__(self, wav_scp, what, n_shift=256, ref_fs=None, f0_range=None):
        self.wavs, self.what, self.n_shift, self.ref_fs = dict(read_scp(wav_scp)), what, n_shift, ref_fs
        self.f0_range = f0_range  # (floor, ceil) Hz; None: ebm.metrics' default
        self.cache, self.fs = {}, {}

    def __getitem__(self, key):
        if key not in self.cache:
            from ebm.metrics import analyse

            if self.ref_fs is None:  # the reference
                wav, fs = read_wav(self.wavs[key], key, f"{self.what} wav", fix="rerun stage 1")
            else:
                wav, fs = read_wav(self.wavs[key], key, f"{self.what} wav", fs=self.ref_fs.fs[key],
                                   fix="vocode it at the reference's rate (stage 7)")
            self.fs[key] = fs
            rng = {} if self.f0_range is None else dict(f0_floor=self.f0_range[0], f0_ceil=self.f0_range[1])
            self.cache[key] = analyse(wav, fs, n_shift=self.n_shift, what=f"{self.what} wav {self.wavs[key]}", **rng)
        return self.cache[key]


def compare(ref, systems, keys=None):
    """Per utterance, the common-voiced-frame comparison of ``systems`` (a list of :class:`Analyses`) against
    ``ref``: ``[(key, n_common, log_f0_rmse (S,), voiced_share (S,))]`` over the utterances all of them have.
    The analyses give each system's F0 track table, which :func:`compare_tracks` compares."""
    from ebm.metrics import f0_track_pair

    if keys is None:
        keys = sorted(set(ref.wavs).intersection(*[s.wavs for s in systems]))
    if not keys:
        raise EbmError(f"no utterance is in every wav.scp compared ({ref.what}, "
                       f"{', '.join(s.what for s in systems)}); check the paths")
    tables = [{} for _ in systems]
    for i, key in enumerate(keys, 1):
        for table, s in zip(tables, systems):
            table[key] = f0_track_pair(ref[key], s[key])
        if i % 10 == 0 or i == len(keys):
            logging.info(f"{i}/{len(keys)} utterances analysed for the common voiced frames")
    return compare_tracks(tables, [s.what for s in systems])


def compare_tracks(tables, what):
    """:func:`compare` from F0 track tables (:func:`read_f0_tracks`) of several systems scored against the same
    references: ``what`` names them for errors. The rows are the same as :func:`compare` gives from the wavs."""
    from ebm.metrics import common_voiced_f0_tracks

    keys = sorted(set(tables[0]).intersection(*tables[1:]))
    if not keys:
        raise EbmError(f"no utterance has an F0 track in every table compared ({', '.join(what)})")
    rows = []
    for key in keys:
        ref_f0 = tables[0][key][0]
        for t, name in zip(tables[1:], what[1:]):
            if not np.array_equal(t[key][0], ref_f0):
                raise EbmError(f"{key}: the reference's F0 differs between the tracks of {what[0]} and {name} "
                               "(scored against other references or F0 ranges); rerun stage 7")
        r = common_voiced_f0_tracks(ref_f0, [t[key][1] for t in tables])
        rows.append((key, r["n_common"], r["log_f0_rmse"], r["voiced_share"]))
    return rows


def summary(rows, n_boot=2000):
    """Means over utterances and, for each system after the first, the paired difference from the first."""
    rmse = np.array([r[2] for r in rows])
    share = np.array([r[3] for r in rows])
    out = {"n_utts": len(rows), "mean_common_frames": float(np.mean([r[1] for r in rows])),
           "log_f0_rmse": [float(np.nanmean(rmse[:, s])) for s in range(rmse.shape[1])],
           "voiced_share": [float(np.mean(share[:, s])) for s in range(share.shape[1])],
           "diff_ci95": [None] + [list(bootstrap(rmse[:, s] - rmse[:, 0], n_boot)) for s in range(1, rmse.shape[1])]}
    return out
