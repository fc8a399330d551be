"""Print the parameter count of a trained ESPnet TTS model (the network alone, without feature extraction)."""

import argparse
import contextlib
import io
import logging

from ebm.cli import run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--model_file", required=True)
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
        from espnet2.tasks.tts import TTSTask

    model, _ = TTSTask.build_model_from_file(args.config, args.model_file, "cpu")
    print(sum(p.numel() for p in model.tts.parameters()))


if __name__ == "__main__":
    run(main)
