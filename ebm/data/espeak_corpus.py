"""A small single-speaker English TTS corpus synthesized offline by eSpeak NG, in LJSpeech-1.1 layout.

The recipes need a corpus that every machine can build without network or licences: the ``espeakng-loader`` wheel
bundles libespeak-ng and its data, and a formant synthesizer is fast enough to make a few hundred utterances in
seconds. The result (``wavs/ID.wav`` + ``metadata.csv``) goes through the same code as the real LJSpeech.

Determinism: libespeak-ng keeps synthesis state from one utterance to the next (the same text gives slightly
different samples depending on what was spoken before it, and ``espeak_Terminate``/``espeak_Initialize`` does not
reset it). Each worker therefore initialises the library once and ``fork()``s a child per utterance, so every
utterance starts from the same freshly initialised state: the audio depends only on (library build, voice, rate,
text), never on ``nj``, the order of the sentences or their neighbours.
"""

import ctypes
import logging
import multiprocessing
import os
import re
import shutil
import struct
import time
import wave

from ebm.cli import EbmError

logger = logging.getLogger(__name__)

ESPEAK_FS = 22050  # libespeak-ng's native output rate; it is returned by espeak_Initialize and checked there
MIN_WPM, MAX_WPM = 80, 450  # the range espeak_SetParameter(espeakRATE) honours; it clamps outside it
ID_PATTERN = re.compile(r"[A-Za-z0-9_]+")
CORPUS_ENTRIES = {"wavs", "metadata.csv", "README"}  # what make_corpus writes; nothing else is ever deleted

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when the data path is wrong
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # a short pause after the last word, so utterances end the way recorded speech does
_PARAM_RATE = 1
_EE_NOT_FOUND = 2

_FULL_SCALE = 32767
_MAX_CLIPPED_FRACTION = 0.001  # a few saturated samples are harmless; more means a broken synthesis setting
_MIN_PEAK = 328  # 1 % of full scale: anything quieter is silence, not speech

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakCorpusError(EbmError):
    """An expected failure (bad input, unknown voice, broken audio); the message says what to fix."""


# --------------------------------------------------------------------------------------------------------------
# Worker side: these run in spawned pool processes and never import numpy, so the processes that fork() have a
# single thread (forking a multi-threaded process, e.g. one with OpenBLAS's pool, is unsafe).


class _Espeak:
    """libespeak-ng initialised in this process; it is process-global, so there is at most one per process."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as e:
            raise EspeakCorpusError(f"espeakng-loader is not installed ({e}); pip install espeakng-loader") from e
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        # Without the wheel's data path the library looks in /usr/share and fails.
        data_path = espeakng_loader.get_data_path().encode()
        fs = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if fs <= 0:
            raise EspeakCorpusError(f"espeak_Initialize failed (returned {fs}) with data path {data_path.decode()}")
        self.lib = lib
        self.fs = fs
        self.version = lib.espeak_Info(None).decode()
        self._chunks = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: the library only holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.settings = None

    def _collect(self, wav, numsamples, events):
        if numsamples > 0:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0  # 0 = go on

    def configure(self, voice, wpm):
        """Set voice and rate once per worker, before any synthesis, so every forked child inherits them."""
        if self.settings == (voice, wpm):
            return
        if self.settings is not None:
            # Would only happen if a pool were reused across settings; the state would then depend on history.
            raise EspeakCorpusError("internal error: an eSpeak worker cannot change voice after configuration")
        rc = self.lib.espeak_SetVoiceByName(voice.encode())
        if rc == _EE_NOT_FOUND:
            raise EspeakCorpusError(
                f"unknown eSpeak NG voice {voice!r} (eSpeak NG {self.version}); try e.g. 'en-us', 'en-gb' or 'en'"
            )
        if rc != 0:
            raise EspeakCorpusError(f"espeak_SetVoiceByName({voice!r}) failed with code {rc}")
        if wpm is not None:
            rc = self.lib.espeak_SetParameter(_PARAM_RATE, int(wpm), 0)
            if rc != 0:
                raise EspeakCorpusError(f"espeak_SetParameter(rate={wpm}) failed with code {rc}")
        self.settings = (voice, wpm)

    def synth_in_child(self, text):
        """Return the utterance's little-endian int16 bytes, synthesized in a fork of the configured state."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesize, send "<rc><samples>", exit without running any Python cleanup
            status = 1
            try:
                os.close(read_fd)
                encoded = text.encode("utf-8")
                rc = self.lib.espeak_Synth(
                    encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
                )
                view = memoryview(struct.pack("<i", rc) + b"".join(self._chunks))
                while view:
                    view = view[os.write(write_fd, view) :]
                status = 0
            finally:
                os._exit(status)
        os.close(write_fd)
        chunks = []
        with os.fdopen(read_fd, "rb") as reader:
            while True:
                chunk = reader.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        _, wait_status = os.waitpid(pid, 0)
        data = b"".join(chunks)
        if os.waitstatus_to_exitcode(wait_status) != 0 or len(data) < 4:
            raise EspeakCorpusError(
                f"the eSpeak NG child process failed (exit {os.waitstatus_to_exitcode(wait_status)})"
            )
        (rc,) = struct.unpack("<i", data[:4])
        if rc != 0:
            raise EspeakCorpusError(f"espeak_Synth failed with code {rc}")
        return data[4:]


_ENGINE = None


def _synth_task(task):
    """Pool task: ``(index, text, voice, wpm)`` -> ``(index, fs, version, samples bytes, error message)``."""
    global _ENGINE
    index, text, voice, wpm = task
    try:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        _ENGINE.configure(voice, wpm)
        return index, _ENGINE.fs, _ENGINE.version, _ENGINE.synth_in_child(text), None
    except EspeakCorpusError as e:
        return index, None, None, None, str(e)
    except OSError as e:  # fork/pipe/dlopen trouble: still reported as a clear message, not a remote traceback
        return index, None, None, None, f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------------------------
# Caller side.


def _check_settings(voice, wpm, fs, nj):
    if not isinstance(voice, str) or not voice.strip():
        raise EspeakCorpusError(f"voice must be a non-empty string, got {voice!r}")
    if wpm is not None and (isinstance(wpm, bool) or not isinstance(wpm, int) or not MIN_WPM <= wpm <= MAX_WPM):
        raise EspeakCorpusError(f"speed_wpm must be an integer in [{MIN_WPM}, {MAX_WPM}] (words/minute), got {wpm!r}")
    if fs != ESPEAK_FS:
        raise EspeakCorpusError(
            f"eSpeak NG synthesizes at {ESPEAK_FS} Hz only, got fs={fs}; resample in the recipe (its fs setting)"
        )
    if isinstance(nj, bool) or not isinstance(nj, int) or nj < 1:
        raise EspeakCorpusError(f"nj must be a positive integer, got {nj!r}")
    if not hasattr(os, "fork"):
        raise EspeakCorpusError("deterministic eSpeak NG synthesis needs os.fork (Linux or macOS)")


def validate_audio(samples, where):
    """Reject audio that cannot be speech, so a broken library or setting fails loudly instead of training on it."""
    import numpy as np

    if samples.size == 0:
        raise EspeakCorpusError(f"{where}: eSpeak NG produced no audio")
    magnitude = np.abs(samples.astype(np.int32))
    peak = int(magnitude.max())
    if peak < _MIN_PEAK:
        raise EspeakCorpusError(f"{where}: eSpeak NG produced silence (peak {peak} of {_FULL_SCALE})")
    clipped = int(np.count_nonzero(magnitude >= _FULL_SCALE))
    if clipped > max(3, _MAX_CLIPPED_FRACTION * samples.size):
        raise EspeakCorpusError(
            f"{where}: {clipped} of {samples.size} samples are clipped at full scale; try another voice"
        )


def _iter_synthesize(texts, voice, wpm, fs, nj, where):
    """Yield ``(index, int16 array, library version)`` in input order; ``where(i)`` names utterance i in errors."""
    import numpy as np

    _check_settings(voice, wpm, fs, nj)
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise EspeakCorpusError(f"{where(i)}: text is empty")
    if not texts:
        return
    tasks = [(i, text, voice, wpm) for i, text in enumerate(texts)]
    nj = min(nj, len(tasks))
    chunksize = max(1, min(16, len(tasks) // (4 * nj)))
    # spawn, not fork: workers must start with a pristine, single-threaded interpreter (see the module docstring)
    with multiprocessing.get_context("spawn").Pool(processes=nj) as pool:
        for index, got_fs, version, data, error in pool.imap(_synth_task, tasks, chunksize=chunksize):
            if error is not None:
                raise EspeakCorpusError(f"{where(index)}: {error}")
            if got_fs != fs:
                raise EspeakCorpusError(f"{where(index)}: eSpeak NG produced {got_fs} Hz audio, expected {fs}")
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
            validate_audio(samples, where(index))
            yield index, samples, version


def synthesize(texts, voice="en-us", rate=None, fs=ESPEAK_FS, nj=1):
    """Synthesize each text to an int16 array at ``fs`` Hz (``rate`` in words per minute, None = voice default).

    Runs in ``nj`` worker processes even for ``nj=1``: the library is process-global and keeps state, and the
    caller's process (with numpy's threads) must not fork.
    """
    return [samples for _, samples, _ in _iter_synthesize(texts, voice, rate, fs, nj, lambda i: f"utterance {i + 1}")]


def read_sentences(path):
    """Return the sentences of a one-per-line file, rejecting what would make text and audio disagree.

    Digits are refused because eSpeak NG would read them out while the transcript keeps the digits; ``|`` would
    break metadata.csv; non-ASCII keeps the corpus's grapheme inventory small and predictable.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise EspeakCorpusError(f"cannot read sentences file {path}: {e.strerror or e}") from e
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file's final newline
    if not lines:
        raise EspeakCorpusError(f"{path}: no sentences (the file is empty)")
    sentences = []
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip(b"\r")
        bad = next((i for i, b in enumerate(line) if b > 127), None)
        if bad is not None:
            raise EspeakCorpusError(f"{path}:{lineno}: non-ASCII byte 0x{line[bad]:02x} at column {bad + 1}")
        text = line.decode("ascii").strip()
        if not text:
            raise EspeakCorpusError(f"{path}:{lineno}: empty line (one sentence per line, no blank lines)")
        digit = next((c for c in text if c.isdigit()), None)
        if digit is not None:
            raise EspeakCorpusError(f"{path}:{lineno}: contains the digit {digit!r}; spell numbers out in words")
        if "|" in text:
            raise EspeakCorpusError(f"{path}:{lineno}: contains '|', the metadata.csv field separator")
        control = next((c for c in text if not c.isprintable()), None)
        if control is not None:
            raise EspeakCorpusError(f"{path}:{lineno}: contains the control character {control!r}")
        sentences.append(" ".join(text.split()))
    return sentences


def utterance_ids(n, id_prefix="ME"):
    """Zero-padded ids, so lexical order (what Kaldi-style tools sort by) is sentence order."""
    if not ID_PATTERN.fullmatch(id_prefix or ""):
        raise EspeakCorpusError(f"id_prefix must match {ID_PATTERN.pattern}, got {id_prefix!r}")
    width = max(4, len(str(n)))
    return [f"{id_prefix}-{i:0{width}d}" for i in range(1, n + 1)]


def read_corpus_texts(out_dir):
    """``{id: text}`` of a complete corpus directory, or None if it is missing or incomplete."""
    metadata = os.path.join(out_dir, "metadata.csv")
    if not os.path.isfile(metadata):
        return None
    texts = {}
    with open(metadata, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("|")
            if len(fields) != 3 or not fields[0]:
                return None
            if not os.path.isfile(os.path.join(out_dir, "wavs", fields[0] + ".wav")):
                return None
            texts[fields[0]] = fields[1]
    return texts or None


def is_complete(out_dir):
    """True when metadata.csv exists and every wav it lists exists (make_corpus only ever renames such a dir in)."""
    return read_corpus_texts(out_dir) is not None


def _check_removable(path):
    """Refuse to replace anything but a directory make_corpus made: a mistyped out_dir must not lose data."""
    if os.path.islink(path) or not os.path.isdir(path):
        raise EspeakCorpusError(f"{path} exists and is not a directory; remove it or choose another out_dir")
    foreign = sorted(set(os.listdir(path)) - CORPUS_ENTRIES)
    if foreign:
        raise EspeakCorpusError(
            f"{path} exists and holds files this tool did not write ({', '.join(foreign[:5])}); "
            "remove it yourself or choose another out_dir"
        )


def write_wav(path, samples, fs):
    """16-bit PCM mono through the stdlib, so the bytes do not depend on an audio library's version."""
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(fs)
        w.writeframes(samples.astype("<i2").tobytes())


def make_corpus(sentences_file, out_dir, nj=2, voice="en-us", speed_wpm=None, id_prefix="ME", overwrite=False):
    """Synthesize every sentence of ``sentences_file`` into ``out_dir`` (LJSpeech-1.1 layout); return out_dir.

    The corpus is built in ``out_dir + ".tmp"`` and renamed into place at the end, so an interrupted run never
    leaves a directory that looks complete. A complete ``out_dir`` is kept unless ``overwrite``.
    """
    out_dir = os.path.normpath(out_dir)
    sentences = read_sentences(sentences_file)
    ids = utterance_ids(len(sentences), id_prefix)
    _check_settings(voice, speed_wpm, ESPEAK_FS, nj)

    existing = read_corpus_texts(out_dir)
    if existing is not None and not overwrite:
        if existing != dict(zip(ids, sentences)):
            logger.warning(
                f"{out_dir} is complete but its texts differ from {sentences_file}; rerun with overwrite to rebuild"
            )
        logger.info(f"{out_dir} is already complete ({len(existing)} utterances); skipping (overwrite to rebuild)")
        return out_dir

    tmp_dir = out_dir + ".tmp"
    if os.path.lexists(tmp_dir):
        logger.info(f"removing stale {tmp_dir} left by an interrupted run")
        if os.path.isdir(tmp_dir) and not os.path.islink(tmp_dir):
            shutil.rmtree(tmp_dir)
        else:
            os.remove(tmp_dir)
    if os.path.lexists(out_dir):
        _check_removable(out_dir)  # before synthesis, so a refusal costs nothing; removal waits for the swap
    wav_dir = os.path.join(tmp_dir, "wavs")
    os.makedirs(wav_dir)

    rate = f"{speed_wpm} wpm" if speed_wpm is not None else "the voice's default rate"
    logger.info(f"synthesizing {len(sentences)} sentences from {sentences_file}: voice {voice}, {rate}, nj={nj}")
    start = time.perf_counter()
    lengths = []
    version = "?"
    try:
        for index, samples, version in _iter_synthesize(
            sentences, voice, speed_wpm, ESPEAK_FS, nj, lambda i: f"{sentences_file}:{i + 1} ({sentences[i]!r})"
        ):
            write_wav(os.path.join(wav_dir, ids[index] + ".wav"), samples, ESPEAK_FS)
            lengths.append(samples.size)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # nothing half-made is left behind, even on Ctrl-C
        raise
    elapsed = time.perf_counter() - start

    with open(os.path.join(tmp_dir, "README"), "w", encoding="utf-8") as f:
        f.write(
            f"Synthetic single-speaker English speech made by ebm.data.espeak_corpus with eSpeak NG {version} "
            f"(espeakng-loader), voice {voice}, {rate}.\n"
            f"{len(sentences)} utterances, {sum(lengths) / ESPEAK_FS:.2f} s, {ESPEAK_FS} Hz 16-bit PCM mono.\n"
            "metadata.csv: ID|text|normalized text (the text is already normalized).\n"
        )
    # Written last: a directory with metadata.csv is one whose wavs are all there.
    with open(os.path.join(tmp_dir, "metadata.csv"), "w", encoding="utf-8", newline="\n") as f:
        for utt_id, text in zip(ids, sentences):
            f.write(f"{utt_id}|{text}|{text}\n")

    if os.path.lexists(out_dir):
        _check_removable(out_dir)
        shutil.rmtree(out_dir)
    os.rename(tmp_dir, out_dir)

    seconds = [n / ESPEAK_FS for n in lengths]
    logger.info(
        f"wrote {len(lengths)} utterances to {out_dir}: {sum(seconds):.1f} s of audio "
        f"(min {min(seconds):.2f} s, max {max(seconds):.2f} s) in {elapsed:.1f} s with eSpeak NG {version}"
    )
    return out_dir
