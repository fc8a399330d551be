"""What the benchmark entry points share: CPU timing and random-weight models built from a recipe's config.

Benchmarks need no trained model: a network's cost depends on its size and its inputs' lengths, not its weights.
Rates use CPU time, so that on a shared machine the share of wall time a process is descheduled for, which changes
from row to row, does not enter them.
"""

import contextlib
import io
import os
import time

import yaml



def timed(fn):
    """``fn()``, its CPU seconds and its wall seconds."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.process_time() - c0, time.perf_counter() - w0)


def char_token_list(texts, cleaner="tacotron"):
    """A character token list covering ``texts`` after ``cleaner``, in ESPnet's layout."""
    with contextlib.redirect_stdout(io.StringIO()):
        from espnet2.text.cleaner import TextCleaner

    clean = TextCleaner(cleaner)
    chars = sorted({c for t in texts for c in clean(t)} - {" "})
    return ["<blank>", "<unk>", "<space>", *chars, "<sos/eos>"]


def build_tacotron2(tts_conf, token_list, fs, n_fft, n_shift, n_mels, cleaner="tacotron", seed=0, workdir=None):
    """A random ESPnet Tacotron 2 (features extracted as the recipes do, no normalisation) and its parameter count;
    with ``workdir``, also its config.yaml and model.pth there, for ESPnet's ``Text2Speech``."""
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        from espnet2.tasks.tts import TTSTask

    targs = TTSTask.get_parser().parse_args([])
    targs.token_list, targs.token_type, targs.cleaner, targs.g2p = token_list, "char", cleaner, None
    targs.feats_extract_conf = dict(fs=fs, n_fft=n_fft, hop_length=n_shift, n_mels=n_mels)
    targs.normalize = None
    targs.tts_conf = tts_conf
    torch.manual_seed(seed)
    model = TTSTask.build_model(targs)
    files = None
    if workdir is not None:
        files = os.path.join(workdir, "config.yaml"), os.path.join(workdir, "model.pth")
        torch.save(model.state_dict(), files[1])
        with open(files[0], "w") as f:
            yaml.safe_dump(vars(targs), f)
    return model, sum(p.numel() for p in model.parameters()), files


def build_ebm(config, token_list, fs, n_fft, n_shift, n_mels, seed=0):
    """A random EBM (:class:`ebm.espnet_model.ESPnetEBMModel`) from a stage 5 config, features as the recipes
    extract them, no normalisation."""
    import torch

    from ebm.task import EBMTask

    parser = EBMTask.get_parser()
    parser.set_defaults(**{k: v for k, v in config.items() if k in vars(parser.parse_args([]))})
    args = parser.parse_args([])
    args.token_list = list(token_list)
    args.feats_extract = "fbank"
    args.feats_extract_conf = dict(fs=fs, n_fft=n_fft, hop_length=n_shift, n_mels=n_mels)
    args.normalize = None
    torch.manual_seed(seed)
    return EBMTask.build_model(args)
