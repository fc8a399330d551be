"""The text front end an ESPnet TTS model reads: its cleaner, its g2p and its token list.

Two things are checked here, before any stage builds on them. A g2p that needs data it cannot find fails with
what to install: ``g2p_en`` (ESPnet's English phonemes, used by its LJSpeech models) needs NLTK's CMU
dictionary and part-of-speech tagger, and without them NLTK tries a download on import and then raises a long
LookupError from deep inside the tokenizer. And transcripts are tokenised exactly as ESPnet's preprocessor does
(its cleaner, then its tokenizer), so that a token list fixed by someone else (an imported model's) can be checked
against every utterance the recipe will read.
"""

import contextlib
import io
import logging
import os

from ebm.cli import EbmError
from ebm.io import read_scp

# NLTK resources each g2p needs (names as nltk.data.find and nltk.downloader know them).
NLTK_DATA = {
    "g2p_en": ["corpora/cmudict", "taggers/averaged_perceptron_tagger_eng"],
    "g2p_en_no_space": ["corpora/cmudict", "taggers/averaged_perceptron_tagger_eng"],
}


def missing_g2p_data(g2p):
    """The NLTK resources ``g2p`` needs and NLTK cannot find (nothing for a g2p that needs none)."""
    needed = NLTK_DATA.get(g2p or "none", [])
    if not needed:
        return []
    import nltk

    missing = []
    for name in needed:
        try:
            nltk.data.find(name)
        except LookupError:
            missing.append(name)
    return missing


def require_g2p(g2p):
    """Refuse, naming what to install, a g2p whose data is missing (an NLTK download needs a network)."""
    missing = missing_g2p_data(g2p)
    if missing:
        import nltk

        packages = " ".join(name.split("/")[-1] for name in missing)
        raise EbmError(
            f"--g2p {g2p} needs NLTK data that is not installed: {', '.join(missing)} (searched: "
            f"{os.pathsep.join(nltk.data.path)}). Install it where a network is available with "
            f"'tools/venv/bin/python -m nltk.downloader -d tools/venv/nltk_data {packages}' (tools/install.sh "
            "does this when it can), or copy an nltk_data folder that holds them and point NLTK_DATA at it")


class Frontend:
    """ESPnet's cleaner and tokenizer for one (token_type, cleaner, g2p), as its preprocessor applies them."""

    def __init__(self, token_type, cleaner, g2p):
        require_g2p(g2p)
        with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
            from espnet2.text.build_tokenizer import build_tokenizer
            from espnet2.text.cleaner import TextCleaner
        self.cleaner = TextCleaner(cleaner) if cleaner not in (None, "none") else None
        self.tokenizer = build_tokenizer(token_type=token_type, g2p_type=None if g2p in (None, "none") else g2p)

    def tokens(self, text):
        return self.tokenizer.text2tokens(self.cleaner(text) if self.cleaner is not None else text)


def tokens_outside(text_files, token_list, frontend, what="the token list"):
    """One line per utterance (file and id named) whose tokens are not all in ``token_list``."""
    known = set(token_list)
    problems = []
    for path in text_files:
        n = 0
        for utt, text in read_scp(path, allow_empty_value=True):
            n += 1
            toks = frontend.tokens(text)
            outside = sorted(set(toks) - known)
            if not toks:
                problems.append(f"{path}: {utt}: no tokens from {text!r}")
            elif outside:
                problems.append(f"{path}: {utt}: tokens {outside} are not in {what} (they would be read as "
                                f"<unk>): rewrite the transcript, or drop the utterance (utils/fix_data_dir.sh)")
        logging.info(f"{path}: {n} transcripts tokenised")
    return problems
