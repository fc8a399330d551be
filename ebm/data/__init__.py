"""Corpus handling: downloading corpora and turning them into Kaldi-style data directories."""
