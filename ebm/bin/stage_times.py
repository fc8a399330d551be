"""Print the wall time of each stage of one recipe run, from the ``exp/stage_times.tsv`` that tts.sh appends to.

tts.sh records a stage only when it finished, with the machine it ran on and its thread count (what a rerun
must match to repeat a result bit for bit), so a table mixes no failed attempts.
The last line sets the stages that are ours (everything but stage 3, ESPnet's Tacotron 2 training) against
stage 3: at scale the baseline's training should be the cost that dominates, and a stage of ours that overtakes
it is the one to speed up.
"""

import argparse
import csv

from ebm.cli import EbmError, run

NAMES = {"0": "corpus", "1": "data dirs", "2": "tokens and statistics", "3": "Tacotron 2 training",
         "4": "Tacotron 2 decoding", "5": "EBM training", "6": "Langevin decoding",
         "7": "evaluation (vocoder, metrics, table)"}


def read_runs(path):
    """{run id: [row, ...]} in file order; each row a dict of the TSV's columns."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        raise EbmError(f"{path} does not exist: run a stage of tts.sh first")
    if rows and not {"run", "stage", "seconds"} <= set(rows[0]):
        raise EbmError(f"{path} is not a stage-times table (columns run, stage, seconds expected)")
    runs = {}
    for row in rows:
        runs.setdefault(row["run"], []).append(row)
    return runs


def format_table(rows):
    """Markdown table of one run's stages, then their total and ours against stage 3 where both ran."""
    out = ["| stage | what | wall time | started | machine |", "|---|---|---|---|---|"]
    for r in rows:
        threads = f", {r['threads']} thread(s)" if r.get("threads") else ""  # tables before the column: none
        machine = f"{r['host']}, {r['cores']} cores{threads}, GPU: {r['gpus']}"
        out.append(f"| {r['stage']} | {NAMES.get(r['stage'], '')} | {_hms(int(r['seconds']))} | {r['started']} "
                   f"| {machine} |")
    total = sum(int(r["seconds"]) for r in rows)
    out.append(f"\ntotal: {_hms(total)} over {len(rows)} stage(s)")
    stage3 = [int(r["seconds"]) for r in rows if r["stage"] == "3"]
    if stage3 and len(rows) > 1:
        ours = total - sum(stage3)
        out.append(f"ours (every stage but 3): {_hms(ours)}; stage 3 (Tacotron 2 training): {_hms(sum(stage3))}")
    return "\n".join(out)


def _hms(seconds):
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("table", nargs="?", default="exp/stage_times.tsv")
    p.add_argument("--run", default="", help="run id (first column); default: the last run in the table")
    args = p.parse_args(argv)
    runs = read_runs(args.table)
    if not runs:
        raise EbmError(f"{args.table} lists no finished stage yet")
    run_id = args.run or list(runs)[-1]
    if run_id not in runs:
        raise EbmError(f"run {run_id} is not in {args.table}; its runs: {', '.join(runs)}")
    print(f"Stage times of run {run_id} ({args.table}):")
    print(format_table(runs[run_id]))


if __name__ == "__main__":
    run(main)
