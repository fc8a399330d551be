"""The rule every transcript meets before the cleaner sees it, shared by stage 1-2's check and by synthesis.

ESPnet's tacotron cleaner starts with ``unidecode``: Chinese, Cyrillic, Greek ... become Latin letters
(``你好`` -> ``NI HAO``), symbols become words (``€`` -> ``EUR``), and emoji vanish. Nothing fails, so a model
trains on, or says, something other than the text. Checking the raw transcript catches this where it can still
be fixed. What the rule lets through unchanged: ASCII, Latin letters with diacritics (``café``: the cleaner keeps
the base letter, which is the same language) and typographic punctuation that has an ASCII twin (``’ “ ” — …``).
Everything else is foreign to an English recipe: refused, or, with ``transliterate`` (tts.sh's
``--text_transliterate true``), left to the cleaner, except characters it would drop, which are always refused
since the audio and the text would then disagree silently. Separately, a transcript needs a letter or digit:
``...!?`` has nothing to say, and Tacotron 2 would still produce a few frames for it.
"""

import string
import unicodedata

# Cleaners that transliterate with unidecode, so that script and symbol checks apply.
TRANSLITERATING_CLEANERS = ("tacotron",)
_ASCII_PUNCT = set(string.punctuation) | {" "}


def _cleaner_names(cleaner):
    if cleaner is None:
        return []
    if isinstance(cleaner, str):
        return [] if cleaner == "none" else [cleaner]
    return list(cleaner)


def _transliterate(c):
    from unidecode import unidecode  # what tacotron_cleaner uses

    return unidecode(c)


def _native(c):
    """True for characters the English cleaner keeps in meaning: ASCII, Latin letters and marks, spaces, and
    punctuation that unidecode maps to ASCII punctuation."""
    if ord(c) < 128:
        return True
    cat = unicodedata.category(c)
    if cat.startswith("L"):
        return unicodedata.name(c, "").startswith("LATIN ")
    if cat == "Mn":  # combining accents on Latin letters (decomposed text): the cleaner drops only the accent
        return unicodedata.name(c, "").startswith("COMBINING ")
    if cat == "Zs":
        return True
    if cat.startswith("P"):
        t = _transliterate(c)
        return bool(t) and set(t) <= _ASCII_PUNCT
    return False


def foreign_characters(text, cleaner="tacotron"):
    """``{char: what the cleaner makes of it}`` for the characters outside the recipe's language ('' = dropped).

    Empty unless the cleaner transliterates: without one, every character is a token of its own and the token
    list decides.
    """
    if not set(_cleaner_names(cleaner)) & set(TRANSLITERATING_CLEANERS):
        return {}
    return {c: _transliterate(c) for c in sorted(set(text)) if not _native(c)}


def describe(chars):
    """``'你' (U+4F60 -> 'Ni'), ...``: each character with its code point and what the cleaner would make of it."""
    out = []
    for c, t in chars.items():
        made = "dropped" if not t.strip() else f"-> {t.strip()!r}"
        out.append(f"{c!r} (U+{ord(c):04X}, {made})")
    return ", ".join(out)


def transcript_problem(text, cleaner="tacotron", transliterate=False):
    """The one-line reason ``text`` cannot be used as is, or None. ``cleaner``: ESPnet cleaner name(s)."""
    if not text or not text.strip():
        return "empty transcript"
    foreign = foreign_characters(text, cleaner)
    dropped = {c: t for c, t in foreign.items() if not t.strip()}
    if dropped:
        return (f"the cleaner would silently drop {describe(dropped)} from {text!r}; remove them or write "
                "them out in words")
    if foreign and not transliterate:
        return (f"characters outside the recipe's language (Latin script): {describe(foreign)} in {text!r}; "
                "write them in Latin letters, or allow the cleaner's transliteration explicitly "
                "(tts.sh --text_transliterate true)")
    if not any(c.isalnum() for c in text):
        return f"no letters or digits in {text!r}: there is nothing to say; fix the text or drop the utterance"
    return None
