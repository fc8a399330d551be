"""Shared test helpers: the repository root and a way to run ``python -m ebm.bin.*`` as the recipes do."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]

# A recipe run by a test finds the environment installed, or stops: path.sh would otherwise install tools/venv
# (minutes, gigabytes) inside a test, and into the checkout itself, since test trees link the repository's tools/.
os.environ.setdefault("EBM_NO_INSTALL", "1")


@pytest.fixture
def repo():
    return REPO


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use tiny tensors: one thread is faster, and immune to OpenMP stalls when other jobs keep the cores busy."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_module(module, *args, cwd=None, check=False):
    """Run an entry point in a fresh interpreter; returns the CompletedProcess (stdout and stderr as text)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_tone(path, seconds=0.3, fs=22050, freq=220.0, channels=1):
    """A short sine wav, int16: enough audio for the checks, tiny on disk."""
    t = np.arange(int(seconds * fs)) / fs
    x = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    sf.write(str(path), x, fs, subtype="PCM_16")
    return path
