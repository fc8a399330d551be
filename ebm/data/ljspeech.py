"""Corpora in LJSpeech layout (``metadata.csv`` + ``wavs/``) to Kaldi-style data directories.

LJSpeech 1.1 itself and any single-speaker corpus recorded in the same layout (e.g. the project's development
corpus) go through the same code, so the recipes differ only in where the corpus comes from and how it is split.
"""

import logging
import os
import shutil

from ebm.cli import EbmError

logger = logging.getLogger(__name__)

# Official LJSpeech 1.1 release. The checksum is the one torchaudio pins for this URL
# (torchaudio/datasets/ljspeech.py, _RELEASE_CONFIGS["release1"]["checksum"], a full sha256).
LJSPEECH_URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
LJSPEECH_SHA256 = "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"
LJSPEECH_DIRNAME = "LJSpeech-1.1"
LJSPEECH_NUM_UTTS = 13100

TEXT_FIELDS = ("normalized", "raw")
EXPECTED_LAYOUT = "DIR/metadata.csv (lines 'ID|raw text|normalized text') and DIR/wavs/ID.wav"


class CorpusError(EbmError):
    """A corpus that cannot be turned into data directories; the message says what to fix."""


def _utf8_lines(path):
    """``(line number, text)`` of a UTF-8 file (a BOM allowed); a byte that is not UTF-8 is an error naming the
    line and column, which Python's own decoding error (a byte offset into a read buffer) does not."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                shown = raw[max(0, e.start - 20): e.start + 20].decode("utf-8", errors="replace")
                raise CorpusError(
                    f"{path}:{lineno}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8 (near "
                    f"{shown!r}); re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None


def read_metadata(corpus_dir, text_field="normalized"):
    """Return ``[(utt_id, text)]`` sorted by id, after checking the whole corpus.

    Everything is validated before anything is written, so a bad corpus never leaves half-made data dirs.
    The normalized field falls back to the raw one when empty: some LJSpeech-style corpora leave it blank.
    """
    if text_field not in TEXT_FIELDS:
        raise CorpusError(f"text_field must be one of {TEXT_FIELDS}, got {text_field!r}")
    if not os.path.isdir(corpus_dir):
        raise CorpusError(f"corpus directory {corpus_dir} does not exist (expected layout: {EXPECTED_LAYOUT})")
    metadata = os.path.join(corpus_dir, "metadata.csv")
    if not os.path.isfile(metadata):
        raise CorpusError(
            f"{metadata} not found: {corpus_dir} does not look like an LJSpeech-1.1 directory "
            f"(expected layout: {EXPECTED_LAYOUT})"
        )
    wav_dir = os.path.join(corpus_dir, "wavs")
    if not os.path.isdir(wav_dir):
        raise CorpusError(f"{wav_dir} not found (expected layout: {EXPECTED_LAYOUT})")

    texts = {}
    # No csv module: LJSpeech's text has unbalanced double quotes that csv's quoting would swallow.
    for lineno, line in _utf8_lines(metadata):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("|")
        utt_id = fields[0].strip()
        if len(fields) < 2 or len(fields) > 3:
            raise CorpusError(
                f"{metadata}:{lineno}: expected 'ID|raw text|normalized text' (2 or 3 fields separated "
                f"by '|'), got {len(fields)} field(s): {line[:80]!r}"
            )
        if not utt_id or any(c.isspace() for c in utt_id):
            raise CorpusError(f"{metadata}:{lineno}: utterance id {utt_id!r} is empty or contains whitespace")
        if utt_id in texts:
            raise CorpusError(f"{metadata}:{lineno}: duplicate utterance id {utt_id}")
        raw = fields[1]
        norm = fields[2] if len(fields) == 3 else ""
        text = norm if text_field == "normalized" and norm.strip() else raw
        text = " ".join(text.split())  # Kaldi text files are one line, single-space separated
        if not text:
            raise CorpusError(f"{metadata}:{lineno}: empty transcript for utterance {utt_id}")
        texts[utt_id] = text
    if not texts:
        raise CorpusError(f"{metadata} lists no utterances")

    present = set(os.listdir(wav_dir))
    missing = [f"{u}.wav" for u in sorted(texts) if f"{u}.wav" not in present]
    if missing:
        shown = ", ".join(os.path.join(wav_dir, m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CorpusError(
            f"{len(missing)} wav file(s) listed in {metadata} are missing: {shown}{more}. "
            "The corpus copy is incomplete: extract or copy it again."
        )
    return sorted(texts.items())


def split_ids(utt_ids, num_dev, num_eval):
    """ESPnet's LJSpeech split: sorted ids, the last ``num_dev + num_eval`` held out, dev before eval.

    Taking the held-out sets from the end keeps them the same whatever the training-set size.
    """
    for name, value in (("num_dev", num_dev), ("num_eval", num_eval)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CorpusError(f"{name} must be a positive integer, got {value!r}")
    utt_ids = sorted(utt_ids)
    held = num_dev + num_eval
    if len(utt_ids) <= held:
        raise CorpusError(
            f"too few utterances for the split: {len(utt_ids)} found, need more than "
            f"num_dev + num_eval = {num_dev} + {num_eval} = {held} to leave any for training"
        )
    train, rest = utt_ids[:-held], utt_ids[-held:]
    return train, rest[:num_dev], rest[num_dev:]


def write_data_dir(out_dir, entries, wav_dir, spk):
    """Write one Kaldi data dir (wav.scp, text, utt2spk, spk2utt) via a temporary dir and a rename.

    The rename means an interrupted run never leaves a data dir that looks finished but lacks files.
    """
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    entries = sorted(entries)
    wav_dir = os.path.abspath(wav_dir)
    files = {
        "wav.scp": [f"{u} {os.path.join(wav_dir, u + '.wav')}" for u, _ in entries],
        "text": [f"{u} {t}" for u, t in entries],
        "utt2spk": [f"{u} {spk}" for u, _ in entries],
        "spk2utt": [f"{spk} " + " ".join(u for u, _ in entries)],
    }
    for name, lines in files.items():
        with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    if os.path.lexists(out_dir):
        old = os.path.join(parent, f".{os.path.basename(out_dir)}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        shutil.rmtree(old)
    else:
        os.rename(tmp, out_dir)


def prepare(
    corpus_dir,
    data_dir,
    train_set,
    dev_set,
    eval_set,
    num_dev,
    num_eval,
    text_field="normalized",
    spk="LJ",
):
    """Make ``data_dir/{train_set,dev_set,eval_set}`` from an LJSpeech-layout corpus; return utterance counts."""
    names = [train_set, dev_set, eval_set]
    if len(set(names)) != 3 or not all(names):
        raise CorpusError(f"train/dev/eval set names must be non-empty and distinct, got {names}")
    if not spk or any(c.isspace() for c in spk):
        raise CorpusError(f"speaker id {spk!r} is empty or contains whitespace")
    entries = read_metadata(corpus_dir, text_field)
    parts = split_ids([u for u, _ in entries], num_dev, num_eval)
    text = dict(entries)
    wav_dir = os.path.join(corpus_dir, "wavs")
    counts = {}
    for name, ids in zip(names, parts):
        write_data_dir(os.path.join(data_dir, name), [(u, text[u]) for u in ids], wav_dir, spk)
        counts[name] = len(ids)
        logger.info("wrote %s: %d utterances", os.path.join(data_dir, name), len(ids))
    return counts
