"""Kaldi-style text files (scp, text, utt2spk), YAML configs, and writes that never leave a half-written file
behind."""

import os

from ebm.cli import EbmError


def read_scp(path, allow_empty_value=False):
    """``[(key, value), ...]`` from a ``key value...`` file, keeping file order; errors name file and line."""
    if not os.path.isfile(path):
        raise EbmError(f"{path} does not exist")
    entries, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                raise EbmError(f"{path}:{lineno}: empty line; remove it (utils/fix_data_dir.sh)")
            key, _, value = line.partition(" ")
            value = value.strip()
            if not value and not allow_empty_value:
                raise EbmError(f"{path}:{lineno}: '{key}' has no value")
            if key in seen:
                raise EbmError(f"{path}:{lineno}: duplicate id '{key}'")
            seen.add(key)
            entries.append((key, value))
    return entries


def write_through(path, write):
    """``write(tmp)`` creates the file under a temporary name beside ``path``, which then replaces ``path``: a
    reader (or a re-run after a kill) never sees a partial file."""
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)


def write_atomic(path, text):
    """Write ``text`` through a temporary name and rename (:func:`write_through`)."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    write_through(path, write)


def read_yaml(path, what="config"):
    """A YAML mapping read with the safe loader (nothing in the file runs); an empty file is ``{}``. Errors name
    ``what`` and the file."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise EbmError(f"cannot read the {what} {path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EbmError(f"the {what} {path} is not a YAML mapping")
    return data


def open_feats_scp(path):
    """A dict-like reader of a feats.scp whose values are ``.npy`` files (ESPnet's decodes) or Kaldi arks."""
    entries = read_scp(path)
    if not entries:
        raise EbmError(f"{path} is empty; rerun the stage that writes it")
    if entries[0][1].endswith(".npy"):
        from espnet2.fileio.npy_scp import NpyScpReader

        return NpyScpReader(path)
    import kaldiio

    return kaldiio.load_scp(path)
