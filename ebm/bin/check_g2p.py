"""Refuse a g2p whose data is missing, saying what to install (ebm.text_frontend.require_g2p).

tts.sh runs this before the stages that tokenise text, so that ``--g2p g2p_en`` without NLTK's data stops at once
with the command that installs it, not with a LookupError from inside NLTK.
"""

import argparse
import logging

from ebm.cli import run, setup_logging
from ebm.text_frontend import require_g2p


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--g2p", required=True)
    args = p.parse_args(argv)
    setup_logging()
    require_g2p(args.g2p)
    logging.info(f"g2p {args.g2p}: its data is installed")


if __name__ == "__main__":
    run(main)
