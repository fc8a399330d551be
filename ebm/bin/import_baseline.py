"""Import a trained ESPnet TTS model (packed, unpacked, weights + config, or a model zoo name) as the baseline.

tts.sh runs this before any stage when --baseline_model_file or --baseline_model_tag is given: it writes (or
reuses) OUTPUT_DIR, whose ``frontend`` file gives the recipe the model's token_type, cleaner and g2p. A model on
other features than the recipe's is refused here, with every differing setting named. See ebm.baseline_import.
"""

import argparse

from ebm.baseline_import import import_model
from ebm.cli import run, setup_logging
from ebm.vocoder import FeatureSettings


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_file", default="", help="a packed model (.zip, .tar.gz), its unpacked directory, or a "
                   ".pth (with --config)")
    p.add_argument("--config", default="", help="the config.yaml of a .pth")
    p.add_argument("--model_tag", default="", help="a model zoo name (espnet_model_zoo; needs a network)")
    p.add_argument("--download_dir", default="downloads/espnet_model_zoo", help="where --model_tag downloads to")
    p.add_argument("--output_dir", required=True)
    FeatureSettings.add_arguments(p)
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    import_model(args.output_dir, FeatureSettings.from_args(args), model_file=args.model_file, config=args.config,
                 tag=args.model_tag, download_dir=args.download_dir)


if __name__ == "__main__":
    run(main)
