"""ebm: energy-based models for speech synthesis, as ESPnet-style recipes."""

import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
version = {}
with open(os.path.join(here, "ebm", "__init__.py")) as f:
    for line in f:
        if line.startswith("__version__"):
            exec(line, version)

# Loose bounds here; the exact, tested set is pinned in tools/requirements.txt.
install_requires = [
    "espnet>=202511",
    "torch>=2.0",
    "torchaudio>=2.0",
    "kaldiio>=2.18",
    "sentencepiece>=0.1.99",
    "pyyaml>=6.0",
    "numpy>=1.23",
    "soundfile>=0.12",
    "parallel-wavegan>=0.6.1",
    "espeakng-loader>=0.2.4",
]
extras_require = {
    "test": ["pytest>=7"],
    "eval": ["pyworld", "pysptk", "librosa", "matplotlib"],
    "phn": ["phonemizer>=3.2"],
}

setup(
    name="ebm",
    version=version["__version__"],
    description="Energy-based text-to-speech (arXiv 2310.12765): ESPnet-style recipes, energy network, "
    "NCE training and Langevin decoding",
    long_description=open(os.path.join(here, "README.md")).read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["ebm", "ebm.*"]),
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras_require,
)
