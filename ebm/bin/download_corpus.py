"""Download a corpus archive with resume and sha256 verification, and optionally extract it.

Example (what egs/ljspeech/tts1/local/data.sh runs)::

    python -m ebm.bin.download_corpus --url URL --sha256 HEX --download_dir downloads \
        --extract_to downloads/LJSpeech-1.1
"""

import argparse
import logging
import sys

from ebm.cli import LOG_FORMAT
from ebm.data.download import DownloadError, download, extract



def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="http(s):// or file:// URL of the archive")
    parser.add_argument("--sha256", required=True, help="expected sha256 of the archive (64 hex digits)")
    parser.add_argument("--download_dir", required=True, help="where the archive (and its .part) is kept")
    parser.add_argument("--filename", default=None, help="archive file name (default: the URL's last part)")
    parser.add_argument(
        "--extract_to",
        default=None,
        help="directory to extract into; an archive's single top-level folder becomes this directory",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        archive = download(args.url, args.sha256, args.download_dir, filename=args.filename, timeout=args.timeout)
        if args.extract_to:
            extract(archive, args.extract_to)
    except DownloadError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
