"""ebm: energy-based text-to-speech (arXiv 2310.12765) as ESPnet-style recipes.

Kept import-light: the venv imports :mod:`ebm.compat` at every interpreter start.
"""

__version__ = "0.1.0"
