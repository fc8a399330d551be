"""Does a rerun reproduce the committed table? Compare two RESULTS.json files row by row.

A recipe's committed RESULTS.md comes from its run.sh run from stage 0; a user who reruns it (or the project,
after a change) needs to know whether the new table says the same. Each row of the table (analysis-synthesis,
Tacotron 2, the dev-chosen control, each EBM at its dev choice, whatever setting the rerun chose) is matched by
what it is; each metric shows both runs' means and, for every row but Tacotron 2's, whether the rerun's
difference from its Tacotron 2 falls inside the committed 95% interval of that difference (✓ / ✗): the
differences are what the verdict rests on. Tacotron 2's own numbers are shown but not judged (the two runs'
per-utterance scores are not kept together, so there is no interval for them); analysis-synthesis, which a rerun
reproduces exactly, judges it instead: its difference from Tacotron 2 moves only with Tacotron 2. A row in one
run only (an EBM that the other did not train) is listed as such.

Example, in egs/<corpus>/tts1 after ``./run.sh`` rewrote RESULTS.json::

    git show HEAD:./RESULTS.json > /tmp/committed.json
    python -m ebm.bin.compare_results /tmp/committed.json RESULTS.json
"""

import argparse

from ebm.cli import EbmError, run
from ebm.results import REPRODUCED, load_records, reproduction


def format_rows(rows, split):
    decimals = {key: nd for key, _, nd in REPRODUCED}
    out = [f"{split}: committed -> rerun; ✓ / ✗: the rerun's difference from its Tacotron 2 inside / outside the "
           "committed 95% interval of that difference\n",
           "| row | setting (committed / rerun) | " + " | ".join(h for _, h, _ in REPRODUCED) + " |",
           "|" + "---|" * (len(REPRODUCED) + 2)]
    n = held = 0
    for row in rows:
        cells = []
        for key, a, b, inside, _, _ in row["cells"]:
            nd = decimals[key]
            text = f"{a:.{nd}f} -> {b:.{nd}f}" if a is not None and b is not None else "-"
            if inside is not None:
                n, held = n + 1, held + inside
                text += " ✓" if inside else " ✗"
            cells.append(text)
        cells = cells or ["scored in one run only"] + [""] * (len(REPRODUCED) - 1)
        out.append(f"| {row['role']} | {' / '.join(row['settings'])} | " + " | ".join(cells) + " |")
    out.append(f"\n{held} of {n} differences from Tacotron 2 inside the committed intervals" if n else
               f"\nno intervals on {split} (stage 7 computes them on eval): the means only")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("committed", help="the committed RESULTS.json (git show HEAD:./RESULTS.json > FILE)")
    p.add_argument("rerun", help="the rerun's RESULTS.json")
    p.add_argument("--split", default="eval", choices=["eval", "dev"],
                   help="eval carries the intervals; dev shows the means only")
    args = p.parse_args(argv)
    rows = reproduction(load_records(args.committed), load_records(args.rerun), args.split)
    if not rows:
        raise EbmError(f"{args.committed} and {args.rerun} share no row scored on {args.split}")
    print(format_rows(rows, args.split))


if __name__ == "__main__":
    run(main)
