"""Before stage 3 or 5 resumes a training: move aside a checkpoint.pth that does not load and resume from the newest
snapshot that does (ebm.checkpoint explains what is repaired and why).

    python -m ebm.bin.check_checkpoint exp/tts_X
"""

import argparse

from ebm.checkpoint import prepare_resume
from ebm.cli import EbmError, run, setup_logging


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dir", help="the training's --output_dir (may not exist yet)")
    args = p.parse_args(argv)
    setup_logging()
    try:
        prepare_resume(args.exp_dir)
    except OSError as e:  # a directory that cannot be read or written
        raise EbmError(f"cannot prepare {args.exp_dir} for resuming: {e}; check its permissions and free space") \
            from None


if __name__ == "__main__":
    run(main)
