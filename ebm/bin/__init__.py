"""Entry points, run as ``python -m ebm.bin.NAME`` (the recipes call them from their stages)."""
