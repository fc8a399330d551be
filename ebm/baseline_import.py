"""Import a trained ESPnet TTS model as the recipe's Tacotron 2 baseline, in the form ESPnet publishes models.

A model from ESPnet's model zoo (``espnet_model_zoo``) or from an ESPnet recipe's ``pack`` stage is an archive:
``meta.yaml`` naming the training config and the weights, and the files the config points to (the feature
statistics). The recipe adopts what belongs to the model: its token list (the order matters: it indexes the
embedding), its cleaner and g2p, and its feature statistics (the model's outputs are normalised by them, so the
EBM must read them the same way). What cannot be adopted is the feature extraction: the recipe's recordings,
vocoder and metrics are in the recipe's mel, so a model on another mel is refused, naming each setting.

An import is one directory (``exp/baseline_import``): ``config.yaml`` (the model's, its statistics path pointing
beside it), ``model.pth`` (a link to the weights), ``tokens.txt``, ``feats_stats.npz``, ``frontend`` (token_type,
cleaner and g2p on one line, for the shell) and ``source`` (what was imported; written last, so an interrupted
import is redone, and a finished one is reused without unpacking or downloading again).
"""

import contextlib
import inspect
import io
import json
import logging
import os
import shutil
import urllib.error
import urllib.request

import numpy as np
import yaml

from ebm.cli import EbmError
from ebm.io import read_yaml, write_atomic, write_through

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
FRONTEND_KEYS = ("token_type", "cleaner", "g2p")
# LogMelFbank's option -> the recipe's (tts.sh) option of the same meaning
RECIPE_OPTION = {"fs": "fs", "n_fft": "n_fft", "hop_length": "n_shift", "win_length": "win_length",
                 "n_mels": "n_mels", "fmin": "fmin", "fmax": "fmax"}
# Where espnet_model_zoo fetches models from: reachable means a tag can be downloaded.
ZOO_HOSTS = ("https://huggingface.co", "https://zenodo.org")


def _quiet_import(name):
    with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
        return __import__(name, fromlist=["_"])


# ----------------------------------------------------------------------------------------------- locating a model
def is_archive(path):
    return str(path).endswith(ARCHIVE_SUFFIXES)


def _from_meta(files, where):
    """(config, weights) from the file table of a pack's meta.yaml (ESPnet's TTS names them so)."""
    if "train_config" not in files or "model_file" not in files:
        raise EbmError(f"{where} is not a packed ESPnet TTS model: its meta.yaml lists {sorted(files)}, "
                       "not train_config and model_file")
    return files["train_config"], files["model_file"]


def _locate_in_dir(d):
    meta = os.path.join(d, "meta.yaml")
    if os.path.isfile(meta):
        m = read_yaml(meta, "packed model's meta.yaml")
        files = {k: os.path.join(d, v) for k, v in {**(m.get("yaml_files") or {}), **(m.get("files") or {})}.items()}
        return _from_meta(files, d)
    pths = sorted(f for f in os.listdir(d) if f.endswith(".pth") and f != "checkpoint.pth")
    if os.path.isfile(os.path.join(d, "config.yaml")) and len(pths) == 1:
        return os.path.join(d, "config.yaml"), os.path.join(d, pths[0])
    raise EbmError(f"{d} holds neither meta.yaml (an unpacked ESPnet model) nor config.yaml with one .pth "
                   f"(it has {pths or 'no .pth'}): give the weights with --baseline_model_file DIR/NAME.pth "
                   "--baseline_config DIR/config.yaml")


def locate(model_file, config=None, unpack_dir=None):
    """(config.yaml, weights) of a model given as a packed archive, an unpacked directory, or weights + config."""
    if not os.path.exists(model_file):
        raise EbmError(f"--baseline_model_file {model_file} does not exist")
    if (os.path.isdir(model_file) or is_archive(model_file)) and config:
        raise EbmError(f"--baseline_config is for a weights file; {model_file} carries its own config: drop it")
    if os.path.isdir(model_file):
        return _locate_in_dir(model_file)
    if is_archive(model_file):
        unpack = _quiet_import("espnet2.main_funcs.pack_funcs").unpack
        if os.path.isdir(unpack_dir):
            shutil.rmtree(unpack_dir)  # unpack() would reuse any earlier archive's files found there
        logging.info(f"unpacking {model_file} -> {unpack_dir}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                files = unpack(model_file, unpack_dir, use_cache=False)
        except Exception as e:  # a corrupt or foreign archive: zipfile, tarfile and yaml all have their own errors
            raise EbmError(f"{model_file} cannot be unpacked as an ESPnet model ({type(e).__name__}: {e})") from None
        return _from_meta(files, model_file)
    if not config:
        raise EbmError(f"{model_file} is a weights file: give its config.yaml with --baseline_config, or give the "
                       "packed model (.zip) or its unpacked directory instead")
    if not os.path.isfile(config):
        raise EbmError(f"--baseline_config {config} does not exist")
    return config, model_file


def network_reachable(hosts=ZOO_HOSTS, timeout=4.0):
    """Whether any of ``hosts`` answers (any HTTP status counts): a tag can only be fetched if one does."""
    for url in hosts:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError, ValueError):
            continue
    return False


def fetch(tag, download_dir):
    """Download and unpack a model zoo model by name (``espnet_model_zoo``); (config, weights)."""
    alternative = ("download the packed model (.zip) where a network is available and give it with "
                   "--baseline_model_file MODEL.zip (or its unpacked directory)")
    try:
        downloader = _quiet_import("espnet_model_zoo.downloader")
    except ImportError:
        downloader = None
    install = "" if downloader else (" espnet_model_zoo is not installed either: "
                                     "'tools/venv/bin/pip install espnet_model_zoo' installs it.")
    if not network_reachable():
        raise EbmError(f"--baseline_model_tag {tag}: no network ({', '.join(ZOO_HOSTS)} unreachable), so the "
                       f"model cannot be fetched; {alternative}.{install}")
    if downloader is None:
        raise EbmError(f"--baseline_model_tag {tag} needs espnet_model_zoo, which is not installed: "
                       f"'tools/venv/bin/pip install espnet_model_zoo', or {alternative}")
    logging.info(f"fetching {tag} with espnet_model_zoo -> {download_dir}")
    try:
        files = downloader.ModelDownloader(download_dir).download_and_unpack(tag)
    except Exception as e:  # unknown name, network failure mid-way: the zoo raises many kinds
        raise EbmError(f"--baseline_model_tag {tag} could not be fetched ({type(e).__name__}: {e}); "
                       f"{alternative}") from None
    return _from_meta(files, tag)


# ------------------------------------------------------------------------------------------------ reading a model
def _find(path, bases):
    """``path`` as written in a config: as is (ESPnet's unpack rewrites it), else under one of ``bases``."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    for base in bases:
        if os.path.exists(os.path.join(base, path)):
            return os.path.join(base, path)
    return None


def _bases(config_path):
    """Where a relative path in a config may start: the config's folder and its parents (a recipe or a pack)."""
    d, out = os.path.dirname(os.path.abspath(config_path)), []
    for _ in range(4):
        out.append(d)
        d = os.path.dirname(d)
    return out


def read_config(config_path):
    config = read_yaml(config_path, "ESPnet training config")
    if not config:
        raise EbmError(f"{config_path} is not an ESPnet training config")
    return config


def model_tokens(config, config_path):
    tokens = config.get("token_list")
    if isinstance(tokens, str):  # a path, as some configs keep it
        path = _find(tokens, _bases(config_path))
        if path is None:
            raise EbmError(f"{config_path}: its token_list {tokens} does not exist")
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
    if not tokens:
        raise EbmError(f"{config_path} has no token_list: is it a TTS model's training config?")
    return [str(t) for t in tokens]


def frontend(config, config_path):
    """(token_type, cleaner, g2p) of the model, ``none`` for what it does not use."""
    values = []
    for key in FRONTEND_KEYS:
        v = config.get(key)
        v = "none" if v in (None, "None", "") else str(v)
        if len(v.split()) != 1:
            raise EbmError(f"{config_path}: {key} {v!r} is not a single word")
        values.append(v)
    return tuple(values)


def fbank_defaults():
    """LogMelFbank's own defaults: the recipe sets only the options in RECIPE_OPTION, the rest stay these."""
    cls = _quiet_import("espnet2.tts.feats_extract.log_mel_fbank").LogMelFbank
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if k != "self" and p.default is not inspect.Parameter.empty}


def _fs(v):
    if isinstance(v, str):  # ESPnet accepts "22.05k"
        return _quiet_import("humanfriendly").parse_size(v)
    return v


def _same(a, b):
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def feature_mismatches(config, settings):
    """``[(setting, model's value, recipe's value), ...]``: every feature setting that differs.

    ``settings`` is an ``ebm.vocoder.FeatureSettings``. Options the model's config leaves out take LogMelFbank's
    defaults, as ESPnet built the model with them."""
    out = []
    if config.get("feats_extract") != "fbank":
        out.append(("feats_extract", config.get("feats_extract"), "fbank"))
    defaults = fbank_defaults()
    recipe = dict(defaults, fs=settings.fs, n_fft=settings.n_fft, hop_length=settings.n_shift,
                  win_length=settings.win_length, n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax)
    conf = dict(defaults, **(config.get("feats_extract_conf") or {}))
    conf["fs"] = _fs(conf["fs"])
    if conf.get("win_length") is None:  # torch.stft's window is then n_fft long
        conf["win_length"] = conf.get("n_fft")
    for key in recipe:
        if not _same(conf.get(key), recipe[key]):
            out.append((f"feats_extract_conf.{key}", conf.get(key), recipe[key]))
    if config.get("normalize") != "global_mvn":
        out.append(("normalize", config.get("normalize"), "global_mvn"))
    return out


def recipe_options(mismatches):
    """The recipe options that would take the model's feature settings (for the ones the recipe has)."""
    opts = []
    for name, model, _ in mismatches:
        key = name.split(".", 1)[-1]
        if name.startswith("feats_extract_conf.") and key in RECIPE_OPTION:
            v = int(model) if isinstance(model, float) and model.is_integer() else model
            opts.append(f"--{RECIPE_OPTION[key]} {v}")
    return " ".join(opts)


def _describe(name, model, recipe):
    key = name.split(".", 1)[-1]
    option = RECIPE_OPTION.get(key) if name.startswith("feats_extract_conf.") else None
    hint = f" (--{option})" if option and option != key else ""
    return f"{name}: baseline {model!r}, recipe {recipe!r}{hint}"


def refuse_mismatches(where, mismatches, fix):
    """One error naming every mismatching setting, with both values."""
    if mismatches:
        lines = "\n  ".join(_describe(*m) for m in mismatches)
        raise EbmError(f"the baseline {where} does not match this recipe:\n  {lines}\n{fix}")


def load_weights(model_path):
    import torch

    try:
        return torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EbmError(f"{model_path} cannot be loaded as an ESPnet model ({type(e).__name__}: {e})") from None


def check_weights(state, model_path, tokens):
    """The weights are a Tacotron 2 whose embedding has one row per token of the list."""
    embed = state.get("tts.enc.embed.weight")
    if embed is None or embed.shape[0] != len(tokens):
        raise EbmError(f"{model_path} is not a Tacotron 2 over {len(tokens)} tokens "
                       f"(tts.enc.embed.weight: {None if embed is None else tuple(embed.shape)})")


def stats_from_weights(state, model_path):
    """A feats_stats.npz (ESPnet's sum / sum_square / count) that gives exactly the model's mean and std.

    The weights hold the normalisation the model applies (GlobalMVN's buffers): the truth when the statistics
    file the config names is missing or was changed after training."""
    mean, std = state.get("normalize.mean"), state.get("normalize.std")
    if mean is None or std is None:
        raise EbmError(f"{model_path} has no normalize.mean / normalize.std: not a model trained with global_mvn")
    mean, std = mean.double().numpy(), std.double().numpy()
    return {"sum": mean, "sum_square": std ** 2 + mean ** 2, "count": np.array(1.0)}


def model_stats(config, config_path, state, model_path):
    """(stats dict, where it came from): the config's feats_stats.npz if it agrees with the weights, else theirs."""
    derived = stats_from_weights(state, model_path)
    name = ((config.get("normalize_conf") or {}).get("stats_file"))
    path = _find(name, _bases(config_path)) if name else None
    if path is not None:
        with np.load(path) as f:
            stats = {k: f[k] for k in f.files}
        count = stats["count"].astype(np.float64)
        mean = stats["sum"] / count
        std = np.sqrt(np.maximum(stats["sum_square"] / count - mean ** 2, 1.0e-20))
        if np.allclose(mean, derived["sum"], rtol=1e-4, atol=1e-5) and np.allclose(std, np.sqrt(
                derived["sum_square"] - derived["sum"] ** 2), rtol=1e-4, atol=1e-5):
            return stats, path
        logging.warning(f"{path} differs from the normalisation in {model_path}: using the weights' (what the "
                        "model applies)")
    return derived, f"{model_path} (normalize.mean, normalize.std)"


# ------------------------------------------------------------------------------------------------ the import dir
def source_key(model_file, config, tag):
    """What an import was made from; a change (another file, or the same path rewritten) imports again."""
    def stat(p):
        if not p:
            return None
        p = os.path.abspath(p)
        st = os.stat(p)
        return [p, st.st_size, int(st.st_mtime)]
    return json.dumps({"tag": tag or None, "model_file": stat(model_file), "config": stat(config)}, sort_keys=True)


def write_import(out_dir, config, model_path, tokens, stats, key):
    """The import directory (see the module's docstring); ``source`` last."""
    os.makedirs(out_dir, exist_ok=True)
    stats_path = os.path.join(out_dir, "feats_stats.npz")

    def save_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **stats)
    write_through(stats_path, save_npz)
    config = dict(config, token_list=list(tokens),
                  normalize_conf=dict(config.get("normalize_conf") or {}, stats_file=stats_path))
    write_atomic(os.path.join(out_dir, "config.yaml"), yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    write_atomic(os.path.join(out_dir, "tokens.txt"), "".join(f"{t}\n" for t in tokens))
    write_through(os.path.join(out_dir, "model.pth"), lambda tmp: os.symlink(os.path.abspath(model_path), tmp))
    write_atomic(os.path.join(out_dir, "frontend"), " ".join(frontend(config, model_path)) + "\n")
    write_atomic(os.path.join(out_dir, "source"), key + "\n")


def import_model(out_dir, settings, model_file=None, config=None, tag=None, download_dir="downloads"):
    """Import (or reuse the earlier import of) a model; refuses one on other features. Returns the import dir."""
    if bool(model_file) == bool(tag):
        raise EbmError("give the baseline with --baseline_model_file or --baseline_model_tag (one of them)")
    if config and not model_file:
        raise EbmError("--baseline_config goes with --baseline_model_file (a weights file)")
    key = source_key(model_file, config, tag) if model_file else source_key(None, None, tag)
    stamp = os.path.join(out_dir, "source")
    fix = ("Run the recipe with the model's feature settings{opts}, or train the baseline in this recipe "
           "(no --baseline_model_file).")
    if os.path.isfile(stamp) and open(stamp).read().strip() == key:
        cfg_path = os.path.join(out_dir, "config.yaml")
        bad = feature_mismatches(read_config(cfg_path), settings)
        refuse_mismatches(model_file or tag, bad, fix.format(opts=f" ({recipe_options(bad)})" if bad else ""))
        logging.info(f"{out_dir}: the import of {model_file or tag} is up to date")
        return out_dir
    if os.path.exists(stamp):
        os.remove(stamp)
    unpack_dir = os.path.join(out_dir, "unpacked")
    if tag:
        cfg_path, model_path = fetch(tag, download_dir)
    else:
        cfg_path, model_path = locate(model_file, config, unpack_dir)
    cfg = read_config(cfg_path)
    bad = feature_mismatches(cfg, settings)
    refuse_mismatches(model_file or tag, bad, fix.format(opts=f" ({recipe_options(bad)})" if bad else ""))
    if cfg.get("tts") != "tacotron2":
        raise EbmError(f"{model_file or tag} is a {cfg.get('tts')} model: the recipe's baseline is a Tacotron 2 "
                       "(its teacher-forced decodes are the EBM's negatives)")
    tokens = model_tokens(cfg, cfg_path)
    state = load_weights(model_path)
    check_weights(state, model_path, tokens)
    stats, stats_src = model_stats(cfg, cfg_path, state, model_path)
    write_import(out_dir, cfg, model_path, tokens, stats, key)
    token_type, cleaner, g2p = frontend(cfg, cfg_path)
    logging.info(f"imported {model_file or tag} -> {out_dir}: {len(tokens)} tokens ({token_type}, cleaner "
                 f"{cleaner}, g2p {g2p}), statistics from {stats_src}")
    return out_dir
