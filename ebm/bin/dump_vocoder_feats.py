"""Write a vocoder's training data in parallel-wavegan's dump format (voc1 stage 1).

One ``OUT_DIR/<utt>.h5`` per utterance with the datasets ``wave`` (float32, the reference audio) and ``feats``
(float32, (T, n_mels)). The mels are ESPnet's own ``LogMelFbank`` at the recipe's settings, the very features the
TTS models are trained on and predict, so a vocoder trained on these dumps fits the TTS output. As in
parallel-wavegan's preprocessing, the wave is padded at the end (edge values) and cut to ``T * n_shift`` samples.

With ``--gta_feats_scp`` the mels come instead from a TTS decode, e.g. Tacotron 2's teacher-forced mels of tts1
stage 4 (ground-truth-aligned training): every utterance must be there, with the frames of the audio (short by the
remainder of the TTS model's reduction factor at most: ``--gta_tts_config``), and the wave is cut to match.

Relative paths in ``wav.scp`` and ``feats.scp`` are read from ``--base_dir`` (the TTS recipe that wrote them).
Every bad utterance is reported, not only the first; nothing is written for a job that has one.
"""

import argparse
import logging
import os
import shutil

import numpy as np
import torch
import yaml

from ebm.audio import read_wav
from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp
from ebm.vocoder import FeatureSettings


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wav_scp", help="the set's wav.scp (utt-id path), e.g. ../tts1/dump/raw/<set>/wav.scp")
    p.add_argument("out_dir", help="writes <utt>.h5 here")
    p.add_argument("--key_file", default=None, help="only these utterances (a job's share of wav_scp)")
    p.add_argument("--base_dir", default=".", help="relative paths in the scp files are relative to this")
    p.add_argument("--gta_feats_scp", default=None,
                   help="take the mels from this feats.scp (npy or Kaldi ark; denormalised log mels (T, n_mels))")
    p.add_argument("--gta_tts_config", default=None,
                   help="the TTS model's config.yaml: its tts_conf.reduction_factor r lets a GTA mel be shorter "
                        "than the audio's frames by T mod r (default r = 1: exactly the audio's frames)")
    FeatureSettings.add_arguments(p)
    p.add_argument("--max_report", type=int, default=20, help="bad utterances listed before the summary")
    return p


def resolve(path, base_dir):
    return path if os.path.isabs(path) else os.path.join(base_dir, path)


def read_wave(utt, path, fs):
    """Float waveform in [-1, 1] as ESPnet's sound loader reads it (:func:`ebm.audio.read_wav`'s checks)."""
    return read_wav(path, utt, fs=fs, fix="rerun the TTS recipe's stage 1")[0]


def reference_frames(num_samples, n_shift):
    """Frames of ESPnet's centred STFT (``Stft(center=True)``) of ``num_samples`` samples."""
    return num_samples // n_shift + 1


def fit_wave(wave, frames, n_shift):
    """parallel-wavegan's rule: pad the end with the edge value, keep ``frames * n_shift`` samples."""
    need = frames * n_shift
    if len(wave) < need:
        wave = np.pad(wave, (0, need - len(wave)), mode="edge")
    return wave[:need]


class GtaFeats:
    """The mels of a TTS decode, checked against the audio they replace."""

    def __init__(self, scp, base_dir, tts_config=None):
        self.scp = scp
        self.entries = dict(read_scp(scp))
        self.base_dir = base_dir
        self.reduction_factor = 1
        if tts_config:
            if not os.path.isfile(tts_config):
                raise EbmError(f"{tts_config} does not exist (the TTS model's config.yaml, next to its .pth)")
            with open(tts_config) as f:
                conf = yaml.safe_load(f) or {}
            self.reduction_factor = int((conf.get("tts_conf") or {}).get("reduction_factor", 1))

    def check_keys(self, keys):
        missing = [k for k in keys if k not in self.entries]
        if missing:
            raise EbmError(f"{len(missing)} of {len(keys)} utterances have no mel in {self.scp}, e.g. "
                           f"{', '.join(missing[:5])}; decode every utterance of the set (tts1 stage 4)")

    def load(self, utt):
        value = resolve(self.entries[utt], self.base_dir)
        try:
            if value.endswith(".npy"):
                return np.load(value)
            import kaldiio

            return kaldiio.load_mat(value)
        except Exception as e:
            raise EbmError(f"{utt}: cannot read its mel {value} from {self.scp} ({e}); rerun tts1 stage 4") from None

    def frames_ok(self, gta_frames, ref_frames):
        """Teacher forcing with reduction factor r decodes T - T mod r frames of a T-frame reference."""
        return gta_frames == ref_frames - ref_frames % self.reduction_factor

    def __call__(self, utt, ref_frames, n_mels):
        mel = np.asarray(self.load(utt), dtype=np.float32)
        if mel.ndim != 2 or mel.shape[1] != n_mels:
            raise EbmError(f"{utt}: its mel in {self.scp} has shape {mel.shape}, expected (frames, {n_mels}); "
                           "was it decoded with the recipe's --n_mels?")
        if not self.frames_ok(mel.shape[0], ref_frames):
            want = ref_frames - ref_frames % self.reduction_factor
            raise EbmError(
                f"{utt}: its mel in {self.scp} has {mel.shape[0]} frames but its audio has {ref_frames} "
                f"(expected {want} with reduction factor {self.reduction_factor}); the decode is not of this "
                "audio (teacher-forced on another set, other --n_shift, or free-running): rerun tts1 stage 4")
        if not np.isfinite(mel).all():
            raise EbmError(f"{utt}: its mel in {self.scp} has non-finite values; rerun tts1 stage 4")
        return mel


def write_dump(path, wave, feats):
    """One parallel-wavegan .h5 (datasets ``wave`` and ``feats``), through a temporary name."""
    import h5py

    tmp = f"{path}.tmp{os.getpid()}"
    with h5py.File(tmp, "w") as f:
        f.create_dataset("wave", data=wave.astype(np.float32))
        f.create_dataset("feats", data=feats.astype(np.float32))
    os.replace(tmp, path)


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    settings = FeatureSettings.from_args(args)
    wavs = dict(read_scp(args.wav_scp))
    keys = [k for k, _ in read_scp(args.key_file, allow_empty_value=True)] if args.key_file else list(wavs)
    unknown = [k for k in keys if k not in wavs]
    if unknown:
        raise EbmError(f"{args.key_file}: {len(unknown)} ids are not in {args.wav_scp}, e.g. {unknown[:3]}")
    gta = None
    if args.gta_feats_scp:
        gta = GtaFeats(args.gta_feats_scp, args.base_dir, args.gta_tts_config)
        gta.check_keys(list(wavs))  # the whole set, so that every job reports the same missing ids
    extractor = None if gta else settings.logmel_extractor()

    # Written under a temporary name and renamed when every utterance is good: a job never leaves half a dump.
    tmp_dir = args.out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    errors, done, frames = [], 0, 0
    for utt in keys:
        try:
            wave = read_wave(utt, resolve(wavs[utt], args.base_dir), settings.fs)
            ref_frames = reference_frames(len(wave), settings.n_shift)
            if gta:
                feats = gta(utt, ref_frames, settings.n_mels)
            else:
                with torch.no_grad():
                    x = torch.from_numpy(wave.astype(np.float32))[None]
                    feats, _ = extractor(x, torch.tensor([x.shape[1]]))
                feats = feats[0].numpy()
                assert feats.shape[0] == ref_frames, (utt, feats.shape, ref_frames)
        except EbmError as e:
            errors.append(str(e))
            continue
        if not errors:
            write_dump(os.path.join(tmp_dir, f"{utt}.h5"), fit_wave(wave, feats.shape[0], settings.n_shift), feats)
            done += 1
            frames += feats.shape[0]
    if errors:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        shown = "\n  ".join(errors[: args.max_report])
        more = f"\n  ... and {len(errors) - args.max_report} more" if len(errors) > args.max_report else ""
        raise EbmError(f"{len(errors)} of {len(keys)} utterances of {args.wav_scp} cannot be dumped:\n  {shown}{more}")
    shutil.rmtree(args.out_dir, ignore_errors=True)
    os.replace(tmp_dir, args.out_dir)
    source = f"mels of {args.gta_feats_scp}" if gta else "ESPnet LogMelFbank"
    logging.info(f"{done} utterances, {frames} frames ({source}) -> {args.out_dir}")


if __name__ == "__main__":
    run(main)
