"""Find, fetch and check a parallel-wavegan vocoder against the recipe's features (voc1 stages 1-3).

Three uses, one per option:

``--config FILE``      a vocoder training config: its feature settings must be the recipe's. Prints its
                       ``train_max_steps`` (voc.sh uses it to tell a finished training from one to resume).
``--checkpoint FILE``  a trained vocoder: ``config.yml`` and ``stats.h5`` must lie beside the .pkl (what the TTS
                       recipe's stage 7 loads) and its features must be the recipe's. Prints the checkpoint.
``--tag TAG``          one of parallel-wavegan's pretrained tags (``ljspeech_hifigan.v1``, ...): downloaded into
                       ``--download_dir/TAG`` with ``parallel_wavegan.utils.download_pretrained_model``, then
                       checked as ``--checkpoint``. Without a network it fails within ``--timeout`` seconds and
                       says how to use a copy fetched elsewhere (``--vocoder_file``).
"""

import argparse
import concurrent.futures
import logging
import os
import socket

import yaml

from ebm.cli import EbmError, run, setup_logging
from ebm.vocoder import FeatureSettings, check_pwg_config

DOWNLOAD_HOST = "drive.google.com"  # where parallel-wavegan's pretrained models are


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="a parallel-wavegan training config (yaml)")
    what.add_argument("--checkpoint", help="a parallel-wavegan checkpoint .pkl, config.yml and stats.h5 beside it")
    what.add_argument("--tag", help="a parallel-wavegan pretrained model tag, e.g. ljspeech_hifigan.v1")
    p.add_argument("--download_dir", default="downloads/vocoders", help="with --tag: the model goes to DIR/TAG")
    p.add_argument("--timeout", type=float, default=10.0, help="with --tag: seconds to wait for the network")
    FeatureSettings.add_arguments(p)
    return p


def load_yaml(path, what):
    if not os.path.isfile(path):
        raise EbmError(f"{what} {path} does not exist")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def check_config(config_file, settings):
    """The training config's features against the recipe's; returns the config."""
    config = load_yaml(config_file, "vocoder config")
    check_pwg_config(config, settings, f"config {config_file}")
    if config.get("format", "hdf5") != "hdf5":
        raise EbmError(f"{config_file}: format {config['format']!r}; voc1 stage 1 writes hdf5 dumps (format: hdf5)")
    if config.get("hop_size") and config.get("batch_max_steps", 0) % config["hop_size"]:
        raise EbmError(f"{config_file}: batch_max_steps {config['batch_max_steps']} is not a multiple of "
                       f"hop_size {config['hop_size']}")
    return config


def check_checkpoint(checkpoint, settings):
    """A self-contained vocoder directory: the .pkl, its config.yml (the recipe's features) and stats.h5."""
    if not os.path.isfile(checkpoint):
        raise EbmError(f"vocoder checkpoint {checkpoint} does not exist")
    vdir = os.path.dirname(os.path.abspath(checkpoint))
    config = load_yaml(os.path.join(vdir, "config.yml"), "vocoder config (beside the checkpoint)")
    stats = os.path.join(vdir, "stats.h5")
    if not os.path.isfile(stats):
        raise EbmError(f"{stats} is missing: the feature statistics of the vocoder's training must lie beside "
                       f"{checkpoint} (voc1 stage 3 copies them there), or its input is normalised wrongly")
    check_pwg_config(config, settings, checkpoint)
    return config


def reachable(host, timeout):
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds, DNS included."""

    def connect():
        with socket.create_connection((host, 443), timeout=timeout):
            return True

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:  # getaddrinfo ignores socket timeouts: the whole attempt runs in a thread that is abandoned when late
        return pool.submit(connect).result(timeout=timeout)
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)


def fetch_tag(tag, download_dir, timeout):
    """Download a pretrained tag (once; an existing copy is reused) and return its checkpoint path."""
    from parallel_wavegan.utils import PRETRAINED_MODEL_LIST, download_pretrained_model, find_files

    if tag not in PRETRAINED_MODEL_LIST:
        known = ", ".join(sorted(t for t in PRETRAINED_MODEL_LIST if t.startswith("ljspeech_")))
        raise EbmError(f"unknown vocoder tag {tag!r}; parallel-wavegan's LJSpeech tags: {known}")
    have = find_files(os.path.join(download_dir, tag), "checkpoint*.pkl")
    if have:
        logging.info(f"{tag}: using the copy in {download_dir}/{tag}")
        return sorted(have)[-1]
    if not reachable(DOWNLOAD_HOST, timeout):
        raise EbmError(
            f"cannot download the vocoder {tag}: no connection to {DOWNLOAD_HOST} within {timeout:g} s (offline?). "
            "On a machine with a network run python -c \"from parallel_wavegan.utils import "
            f"download_pretrained_model as d; print(d('{tag}'))\", copy the directory of the checkpoint it prints "
            "(checkpoint, config.yml, stats.h5) here and pass --vocoder_file <that dir>/checkpoint-<N>steps.pkl "
            "instead")
    socket.setdefaulttimeout(max(timeout, 60.0))  # a stalled transfer fails instead of hanging the recipe
    try:
        return download_pretrained_model(tag, download_dir)
    except Exception as e:
        raise EbmError(f"downloading the vocoder {tag} failed ({type(e).__name__}: {e}); fetch it elsewhere and "
                       "pass --vocoder_file <dir>/checkpoint-<N>steps.pkl (config.yml and stats.h5 beside it)"
                       ) from None


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    settings = FeatureSettings.from_args(args)
    if args.config:
        config = check_config(args.config, settings)
        print(config.get("train_max_steps", ""))
        return
    checkpoint = fetch_tag(args.tag, args.download_dir, args.timeout) if args.tag else args.checkpoint
    config = check_checkpoint(checkpoint, settings)
    logging.info(f"vocoder {checkpoint}: {config.get('generator_type', 'ParallelWaveGANGenerator')}, "
                 "features match the recipe, stats.h5 present")
    print(checkpoint)


if __name__ == "__main__":
    run(main)
