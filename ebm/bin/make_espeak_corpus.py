"""Build the mini_espeak corpus (LJSpeech-1.1 layout) from a sentences file with eSpeak NG.

Run as ``python -m ebm.bin.make_espeak_corpus --sentences FILE --out_dir DIR``; the mini_espeak recipe calls it
in its data stage. Expected failures print ``ERROR: ...`` and exit 1 without a traceback.
"""

import argparse
import logging
import sys

from ebm.cli import LOG_FORMAT
from ebm.data.espeak_corpus import MAX_WPM, MIN_WPM, EspeakCorpusError, make_corpus


def get_parser():
    parser = argparse.ArgumentParser(
        description="Synthesize a single-speaker English TTS corpus in LJSpeech-1.1 layout "
        "(DIR/wavs/ID.wav, DIR/metadata.csv) with eSpeak NG, offline and deterministically.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sentences", required=True, help="text file, one sentence per line (ASCII, no digits)")
    parser.add_argument("--out_dir", required=True, help="corpus directory to create")
    parser.add_argument("--nj", type=int, default=2, help="number of synthesis processes")
    parser.add_argument("--voice", default="en-us", help="eSpeak NG voice name")
    parser.add_argument(
        "--speed_wpm",
        type=int,
        default=None,
        help=f"speaking rate in words per minute ({MIN_WPM}-{MAX_WPM}); default: the voice's own (175)",
    )
    parser.add_argument("--id_prefix", default="ME", help="utterance ids are PREFIX-0001, PREFIX-0002, ...")
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if out_dir is already complete")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        make_corpus(
            args.sentences,
            args.out_dir,
            nj=args.nj,
            voice=args.voice,
            speed_wpm=args.speed_wpm,
            id_prefix=args.id_prefix,
            overwrite=args.overwrite,
        )
    except EspeakCorpusError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
