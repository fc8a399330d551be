"""Write stage 7's listening page, ``exp/results_<vocoder>/index.html`` (``ebm.listening_page``).

Run after ``ebm.bin.make_results`` with the same system dirs: the page shows RESULTS.json's table and verdict,
then, per eval utterance, the text and the audio and mel of the recording, analysis-synthesis, Tacotron 2, the
control and each EBM at its dev-chosen setting.
"""

import argparse

from ebm.cli import run, setup_logging
from ebm.listening_page import write_listening_page
from ebm.vocoder import FeatureSettings


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results_json", required=True, help="make_results' RESULTS.json: the table and the choices")
    p.add_argument("--results_md", default=None, help="make_results' RESULTS.md: linked, and its verdict shown")
    p.add_argument("--data_dir", required=True, help="the eval set's data dir (text, wav.scp: the recordings)")
    p.add_argument("--eval_set", required=True, help="the set's name: <system dir>/<eval_set>/wav_<tag>/wav.scp")
    p.add_argument("--vocoder_tag", required=True)
    p.add_argument("--ground_truth", required=True, help="analysis-synthesis dir")
    p.add_argument("--baseline", required=True, help="Tacotron 2's decode dir")
    p.add_argument("--ebm", action="append", default=[], help="a Langevin decode dir (repeatable; as make_results)")
    p.add_argument("--control", action="append", default=[], help="a control decode dir (repeatable)")
    FeatureSettings.add_arguments(p)  # the mels of the recordings' audio
    p.add_argument("--max_utts", type=int, default=20, help="show the first N eval utterances (sorted by id)")
    p.add_argument("--title", default="")
    p.add_argument("--output_dir", required=True, help="writes index.html and mels/ here")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    write_listening_page(args.results_json, args.data_dir, args.eval_set, args.vocoder_tag, args.ground_truth,
                         args.baseline, args.output_dir, FeatureSettings.from_args(args), ebm_dirs=args.ebm,
                         control_dirs=args.control, results_md=args.results_md, max_utts=args.max_utts,
                         title=args.title)


if __name__ == "__main__":
    run(main)
