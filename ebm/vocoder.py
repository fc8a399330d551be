"""Mel-to-waveform for stage 7 and synthesis: ESPnet's Griffin-Lim, or a parallel-wavegan checkpoint.

Every system in one comparison goes through the same vocoder, so the vocoder is chosen once per recipe run and
its tag names the output directories (``wav_<tag>``). A neural vocoder silently makes wrong audio when its
features differ from the recipe's, so :func:`load_vocoder` refuses a checkpoint whose ``config.yml`` disagrees
with the recipe's feature settings, or that has no ``stats.h5`` beside it (ESPnet's wrapper skips normalisation
without it).

The checkpoint is loaded here rather than through ESPnet's wrapper or ``parallel_wavegan.utils.load_model``: both
read ``config.yml`` with PyYAML's full loader, which runs code written in the file (``!!python/object/apply``).
Here it is read with the safe loader (tuples, which parallel-wavegan's dumper may write, are read as lists), and the
``.pkl`` with ``weights_only=True``; a file that does not load is named as corrupt, with what to do.
"""

import contextlib
import io
import logging
import os

import numpy as np
import torch
import yaml

from ebm.cli import EbmError

# The recipe's feature option -> parallel-wavegan's config.yml key.
PWG_KEYS = {
    "fs": "sampling_rate",
    "n_fft": "fft_size",
    "n_shift": "hop_size",
    "win_length": "win_length",
    "n_mels": "num_mels",
    "fmin": "fmin",
    "fmax": "fmax",
}


class FeatureSettings:
    """The recipe's LogMelFbank settings (tts.sh's --fs --n_fft --n_shift --win_length --n_mels --fmin --fmax)."""

    def __init__(self, fs=22050, n_fft=1024, n_shift=256, win_length=None, n_mels=80, fmin=80, fmax=7600):
        self.fs, self.n_fft, self.n_shift = int(fs), int(n_fft), int(n_shift)
        self.win_length = int(win_length or n_fft)
        self.n_mels, self.fmin, self.fmax = int(n_mels), int(fmin), int(fmax)  # ESPnet type-checks ints

    @staticmethod
    def add_arguments(parser):
        """The recipe's feature options (``--fs ... --fmax``), shared by every entry point that needs them."""
        for name, default in [("fs", 22050), ("n_fft", 1024), ("n_shift", 256), ("win_length", None),
                              ("n_mels", 80), ("fmin", 80), ("fmax", 7600)]:
            parser.add_argument(f"--{name}", type=float if name in ("fmin", "fmax") else int, default=default)

    @classmethod
    def from_args(cls, args):
        return cls(args.fs, args.n_fft, args.n_shift, args.win_length, args.n_mels, args.fmin, args.fmax)

    def logmel_extractor(self):
        """ESPnet's LogMelFbank with these settings: the features the TTS models were trained on."""
        with contextlib.redirect_stdout(io.StringIO()):
            from espnet2.tts.feats_extract.log_mel_fbank import LogMelFbank
        return LogMelFbank(fs=self.fs, n_fft=self.n_fft, win_length=self.win_length, hop_length=self.n_shift,
                           n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax).eval()

    def logmel(self, wav):
        """(T, n_mels) log10 mel of a float waveform, as ESPnet's feats_extract computes it."""
        if getattr(self, "_extractor", None) is None:  # built once: logmel() runs once per utterance
            self._extractor = self.logmel_extractor()
        ext = self._extractor
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(wav, dtype=np.float32))[None]
            feats, _ = ext(x, torch.tensor([x.shape[1]]))
        return feats[0].numpy()


def check_pwg_config(config, settings, where):
    """Raise EbmError naming every feature setting of a parallel-wavegan config.yml that differs from the recipe."""
    bad = []
    for ours, theirs in PWG_KEYS.items():
        want = getattr(settings, ours)
        got = config.get(theirs)
        if theirs == "win_length" and got is None:
            got = config.get("fft_size")
        if got is None:
            bad.append(f"{theirs} is missing (recipe: {want})")
            continue
        try:
            number = float(got)  # PyYAML reads 2.205e4 (no sign in the exponent) as a string
        except (TypeError, ValueError):
            bad.append(f"{theirs}={got!r} is not a number (recipe: {want})")
            continue
        if number != float(want):
            bad.append(f"{theirs}={got} but the recipe's --{ours} is {want}")
    if bad:
        raise EbmError(
            f"the vocoder {where} does not match the recipe's features: " + "; ".join(bad)
            + ". Train a vocoder on these features (egs/<corpus>/voc1) or run the recipe with its settings"
        )


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus ``!!python/tuple`` read as a list (parallel-wavegan dumps with ``yaml.Dumper``)."""


_ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: loader.construct_sequence(node))


def read_vocoder_config(config_file):
    """A vocoder's config.yml as a dict, read without running anything it names (see the module docstring)."""
    try:
        with open(config_file, encoding="utf-8") as f:
            config = yaml.load(f, Loader=_ConfigLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise EbmError(
            f"{config_file} is refused: it is not a plain YAML config ({detail[:300]}). A vocoder config holds "
            "values only; a python tag (!!python/...) would run code when loaded. Use the config.yml written by the "
            "vocoder's training (egs/<corpus>/voc1) or by ebm.bin.fetch_vocoder"
        ) from None
    except UnicodeDecodeError as e:
        raise EbmError(f"{config_file} is not UTF-8 text ({e}); use the config.yml of the vocoder's training") \
            from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise EbmError(f"{config_file} is not a YAML mapping: not a parallel-wavegan config.yml")
    return config


def build_generator(vocoder_file, config, stats_file):
    """The generator of a parallel-wavegan ``.pkl`` (weights only), with its statistics, ready for inference."""
    fix = (f"download it again (python -m ebm.bin.fetch_vocoder) or take a checkpoint-*steps.pkl written by the "
           f"vocoder's training (egs/<corpus>/voc1)")
    try:
        state = torch.load(vocoder_file, map_location="cpu", weights_only=True)
    except Exception as e:  # EOFError, UnpicklingError, RuntimeError (zip), ...: the file is damaged or foreign
        reason = " ".join(str(e).split()[:12]) or type(e).__name__
        raise EbmError(f"{vocoder_file} is corrupt or not a parallel-wavegan checkpoint ({type(e).__name__}: "
                       f"{reason[:120]}...); {fix}") from None
    generator = state.get("model", {}).get("generator") if isinstance(state, dict) else None
    if not isinstance(generator, dict):
        raise EbmError(f"{vocoder_file} is not a parallel-wavegan checkpoint (no model.generator weights); {fix}")
    with contextlib.redirect_stdout(io.StringIO()):
        import parallel_wavegan.models
    generator_type = config.get("generator_type", "ParallelWaveGANGenerator")
    model_class = getattr(parallel_wavegan.models, str(generator_type), None)
    params = config.get("generator_params")
    if model_class is None or not isinstance(params, dict):
        raise EbmError(f"the config.yml beside {vocoder_file} names no known generator (generator_type "
                       f"{generator_type!r}, generator_params {'missing' if params is None else 'given'}); use the "
                       "config.yml of the vocoder's training")
    # parallel-wavegan's own loader corrects this old typo of its configs the same way
    params = {k.replace("upsample_kernal_sizes", "upsample_kernel_sizes"): v for k, v in params.items()}
    try:
        model = model_class(**params)
        model.load_state_dict(generator)
    except (TypeError, RuntimeError, ValueError) as e:
        detail = " ".join(str(e).split())
        raise EbmError(f"{vocoder_file} does not match the generator its config.yml describes ({detail[:200]}); "
                       "keep each checkpoint with the config.yml of its own training") from None
    if generator_type != "VQVAE":  # as parallel-wavegan's loader: VQVAE has no feature statistics
        model.register_stats(stats_file)
    if hasattr(model, "remove_weight_norm"):
        model.remove_weight_norm()
    return model


class GriffinLim:
    """Griffin-Lim on the denormalised log mel: no training, a floor for the comparison.

    The mel is inverted as ESPnet's ``logmel2linear`` does (``10 ** mel`` through the pseudo-inverse of librosa's
    mel basis, floored at 1e-10), with the inverse computed once per vocoder rather than per utterance and without
    importing ESPnet, whose import costs each vocoding job more than a short utterance's Griffin-Lim. ESPnet's
    wrapper lets librosa draw the initial phases from an unseeded generator, so the same mel gave audio whose MCD
    differed by 0.1-0.2 dB from run to run; here the phases are seeded, and every system's audio is reproducible.
    """

    tag = "griffin_lim"
    floor = 1e-10  # ESPnet's EPS in espnet2.utils.griffin_lim

    def __init__(self, settings, n_iter=32, seed=0):
        self.fs = settings.fs
        self.n_shift = settings.n_shift
        self.settings = settings
        self.n_iter = int(n_iter)
        self.seed = seed
        self._inverse_basis = None

    def linear_magnitude(self, mel):
        """(T, n_mels) log10 mel -> (T, n_fft / 2 + 1) linear magnitude."""
        import librosa

        st = self.settings
        mel = np.asarray(mel, dtype=np.float64)
        if mel.ndim != 2 or mel.shape[1] != st.n_mels:
            raise EbmError(f"a mel of shape {mel.shape} for Griffin-Lim; the recipe's features have {st.n_mels} bins")
        if self._inverse_basis is None:
            basis = librosa.filters.mel(sr=st.fs, n_fft=st.n_fft, n_mels=st.n_mels, fmin=st.fmin, fmax=st.fmax)
            self._inverse_basis = np.linalg.pinv(basis)
        return np.maximum(self.floor, np.dot(self._inverse_basis, np.power(10.0, mel).T).T)

    def __call__(self, mel):
        import librosa

        st = self.settings
        spc = self.linear_magnitude(mel)
        wav = librosa.griffinlim(np.abs(spc.T), n_iter=self.n_iter, hop_length=st.n_shift, win_length=st.win_length,
                                 window="hann", center=spc.shape[0] > 1, random_state=self.seed)
        return wav.astype(np.float32)


class ParallelWaveGAN:
    """A parallel-wavegan checkpoint (any generator of that package) through ESPnet's wrapper.

    The checkpoint directory must hold ``config.yml`` and ``stats.h5`` beside the ``.pkl``, as the voc1 recipes
    write it.
    """

    def __init__(self, vocoder_file, settings, device="cpu"):
        if not os.path.isfile(vocoder_file):
            raise EbmError(f"vocoder checkpoint {vocoder_file} does not exist")
        vdir = os.path.dirname(os.path.abspath(vocoder_file))
        config_file = os.path.join(vdir, "config.yml")
        if not os.path.isfile(config_file):
            raise EbmError(f"{config_file} is missing: a parallel-wavegan checkpoint needs its config.yml beside it")
        config = read_vocoder_config(config_file)
        stats_file = os.path.join(vdir, "stats.npy" if config.get("format") == "npy" else "stats.h5")
        if not os.path.isfile(stats_file):
            raise EbmError(
                f"{stats_file} is missing: without the vocoder's feature statistics beside {vocoder_file} its audio "
                "is silently wrong. Copy the stats.h5 of the vocoder's training (voc1 stage 2) into that directory"
            )
        check_pwg_config(config, settings, vocoder_file)
        self._impl = build_generator(vocoder_file, config, stats_file).to(device).eval()
        self.normalize_before = hasattr(self._impl, "mean")  # as ESPnet's wrapper: the stats were registered
        self.device = device
        self.fs = settings.fs
        self.n_shift = settings.n_shift
        name = os.path.basename(vdir.rstrip("/")) or "pwg"
        self.tag = "pwg_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        logging.info("vocoder: %s (%s, stats %s)", vocoder_file, config.get("generator_type", "?"), stats_file)

    def __call__(self, mel):
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(mel, dtype=np.float32), device=self.device)
            wav = self._impl.inference(x, normalize_before=self.normalize_before)
            return wav.view(-1).cpu().numpy().astype(np.float32)


def load_vocoder(vocoder_file=None, settings=None, griffin_lim_iters=32, device="cpu"):
    """Griffin-Lim when ``vocoder_file`` is empty, else a checked parallel-wavegan checkpoint."""
    settings = settings or FeatureSettings()
    if not vocoder_file or vocoder_file == "griffin_lim":
        return GriffinLim(settings, n_iter=griffin_lim_iters)
    return ParallelWaveGAN(vocoder_file, settings, device=device)
