"""Make Kaldi-style train/dev/eval data dirs from a corpus in LJSpeech layout (metadata.csv + wavs/).

Example (what egs/ljspeech/tts1/local/data.sh runs)::

    python -m ebm.bin.prepare_ljspeech_layout --corpus_dir downloads/LJSpeech-1.1 --data_dir data \
        --train_set tr_no_dev --dev_set dev --eval_set eval1 --num_dev 250 --num_eval 250
"""

import argparse
import logging
import sys

from ebm.cli import LOG_FORMAT
from ebm.data.ljspeech import TEXT_FIELDS, CorpusError, prepare



def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", required=True, help="directory holding metadata.csv and wavs/")
    parser.add_argument("--data_dir", default="data", help="where the set directories are written")
    parser.add_argument("--train_set", default="tr_no_dev")
    parser.add_argument("--dev_set", default="dev")
    parser.add_argument("--eval_set", default="eval1")
    parser.add_argument("--num_dev", type=int, required=True, help="utterances held out for dev")
    parser.add_argument("--num_eval", type=int, required=True, help="utterances held out for eval")
    parser.add_argument(
        "--text_field", choices=TEXT_FIELDS, default="normalized", help="metadata.csv field used as transcript"
    )
    parser.add_argument("--spk", default="LJ", help="speaker id written to utt2spk/spk2utt")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        counts = prepare(
            args.corpus_dir,
            args.data_dir,
            args.train_set,
            args.dev_set,
            args.eval_set,
            args.num_dev,
            args.num_eval,
            text_field=args.text_field,
            spk=args.spk,
        )
    except CorpusError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    logging.getLogger(__name__).info(
        "prepared %s from %s: %s",
        args.data_dir,
        args.corpus_dir,
        ", ".join(f"{name} {n}" for name, n in counts.items()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
