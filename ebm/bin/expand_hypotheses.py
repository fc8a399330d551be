"""A training list with several Tacotron 2 hypotheses per text: one entry per (utterance, hypothesis).

A delta criterion on free-running outputs (``hypothesis: {name: free_running}``) sees one hypothesis per
training text, and its energy stops generalising early (mini_espeak: the dev cosine with the true correction
levels off at 0.36). Prenet dropout stays on when Tacotron 2 decodes, so stage 4's extra samples
(``--baseline_num_samples N``) are other plausible outputs for the same text. Listing each as its own training
entry ``<utt>-h<k>`` (k = 0 the seed-0 decode, 1..N the samples), with the same text and reference, teaches the
energy how the correction depends on the hypothesis rather than on the text alone.

Writes ``text``, ``wav.scp``, ``text_shape``, ``speech_shape`` and ``fr_feats.scp`` to the output dir (and
``tf_feats.scp`` with ``--tf_scp``: the teacher-forced decode has the reference's timing, so every entry of a text
gets the same one). Entries are ordered hypothesis by hypothesis, longest reference first within each, so that
ESPnet's ``batch_type: unsorted`` makes batches of different texts of similar length (``sorted`` would batch the
copies of one text together, since they share a reference length).
"""

import argparse
import logging
import os
import shutil

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True, help="the training set's Kaldi dir (text, wav.scp)")
    p.add_argument("--shape_dir", required=True, help="its stage 2 shapes (text_shape, speech_shape)")
    p.add_argument("--hyp_scp", action="append", required=True,
                   help="a denormalised feats.scp of one free-running decode of the set; repeat, seed 0 first")
    p.add_argument("--tf_scp", default=None, help="the set's teacher-forced feats.scp, repeated for every entry")
    p.add_argument("--output_dir", required=True)
    return p


def _read_covering(path, utts, what, fix):
    """``path`` as a dict, which must have a ``what`` for every utterance of ``utts``; ``fix`` ends the error."""
    table = dict(read_scp(path))
    missing = [u for u in utts if u not in table]
    if missing:
        raise EbmError(f"{path} has no {what} for {len(missing)} utterances (e.g. {missing[0]}); {fix}")
    return table


def expand(data_dir, shape_dir, hyp_scps, tf_scp=None):
    """{file name: lines} of the expanded list."""
    speech_shape = dict(read_scp(f"{shape_dir}/speech_shape"))
    utts = list(speech_shape)
    sources = [("text", f"{data_dir}/text"), ("wav.scp", f"{data_dir}/wav.scp"),
               ("text_shape", f"{shape_dir}/text_shape")] + ([("tf_feats.scp", tf_scp)] if tf_scp else [])
    tables = {name: _read_covering(path, utts, "line", "rerun stages 1-4 for this set") for name, path in sources}
    tables["speech_shape"] = speech_shape
    fix = "rerun stage 4 for the training set with --baseline_num_samples as large as the samples used"
    hyps = [_read_covering(path, utts, "hypothesis", fix) for path in hyp_scps]
    utts.sort(key=lambda u: -int(speech_shape[u].split(",")[0]))
    out = {name: [] for name in [*tables, "fr_feats.scp"]}
    for k, table in enumerate(hyps):
        for u in utts:
            key = f"{u}-h{k}"
            for name, t in tables.items():
                out[name].append(f"{key} {t[u]}\n")
            out["fr_feats.scp"].append(f"{key} {table[u]}\n")
    return out


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    out = expand(args.data_dir, args.shape_dir, args.hyp_scp, args.tf_scp)
    final = os.path.normpath(args.output_dir)
    tmp = final + ".tmp"  # a half-written list never looks complete
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, lines in out.items():
        with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
            f.writelines(lines)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    n = len(args.hyp_scp)
    logging.info(f"{len(out['text']) // n} texts x {n} hypotheses = {len(out['text'])} training entries -> {final}")


if __name__ == "__main__":
    run(main)
