"""What every ``ebm.bin`` entry point shares: ESPnet's log format and one way of failing.

An :class:`EbmError` is a problem with the user's input or setup. Entry points print it as one ``ERROR:`` line
that names the file or utterance and the fix, and exit 1; anything else is a bug and keeps its traceback.
"""

import logging
import sys

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


class EbmError(Exception):
    """Bad input or setup that the user can fix; the message says how."""


def setup_logging(verbose=False):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)


def run(main, argv=None):
    """Run an entry point's ``main(argv)``; an :class:`EbmError` becomes ``ERROR: ...`` and exit status 1."""
    try:
        main(argv)
    except EbmError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
