"""Speech from text with the whole method: Tacotron 2 hypothesis -> Langevin refinement on the EBM -> vocoder.

Command line (one wav per line of text, or a Kaldi text file)::

    python -m ebm.bin.synthesize --tts_config exp/tts_X/config.yaml --tts_model exp/tts_X/train.loss.ave.pth \\
        --ebm_config exp/ebm_Y/config.yaml --ebm_model exp/ebm_Y/valid.refine_gain.best.pth \\
        --langevin_config conf/decode_ebm.yaml [--vocoder_file voc/checkpoint.pkl] --text "Hello." --output hello.wav

In Python (a notebook), the same as ESPnet's ``Text2Speech``::

    from ebm.bin.synthesize import EBMText2Speech
    tts = EBMText2Speech(tts_config, tts_model, ebm_config, ebm_model, langevin_config="conf/decode_ebm.yaml")
    out = tts("Hello.")  # out["wav"], out["feat_tacotron2"], out["feat_ebm"], out["energy"], tts.fs
"""

import argparse
import contextlib
import io
import logging
import os

import numpy as np
import soundfile as sf
import torch
import yaml

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp
from ebm.langevin import langevin_from_config, output_problem
from ebm.vocoder import FeatureSettings, load_vocoder


def _load_yaml(path_or_dict):
    if path_or_dict is None or isinstance(path_or_dict, dict):
        return dict(path_or_dict or {})
    with open(path_or_dict) as f:
        return yaml.safe_load(f) or {}


class EBMText2Speech:
    """Text -> waveform: ESPnet's Tacotron 2 gives the initial hypothesis, the EBM's Langevin chain refines it.

    ``langevin_config`` is a decode YAML (or dict) of :class:`ebm.langevin.LangevinSampler` options;
    ``steps=0`` gives Tacotron 2's own output through the same vocoder. ``tts_inference_config`` holds
    Tacotron 2's decoding options (threshold, maxlenratio, ...).
    """

    def __init__(self, tts_config, tts_model, ebm_config, ebm_model, langevin_config=None, vocoder_file=None,
                 tts_inference_config=None, griffin_lim_iters=32, device="cpu", seed=0, **langevin_overrides):
        for path in (tts_config, tts_model, ebm_config, ebm_model):
            if not os.path.isfile(path):
                raise EbmError(f"{path} does not exist (train stages 3 and 5 first, or give the right path)")
        with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
            from espnet2.bin.tts_inference import Text2Speech

            from ebm.task import EBMTask
        from ebm.decode_options import DECODE_KEYS

        decode_conf = {k: v for k, v in _load_yaml(tts_inference_config).items() if k in DECODE_KEYS}
        self.tacotron2 = Text2Speech(tts_config, tts_model, device=device, always_fix_seed=True, seed=seed,
                                     **decode_conf)
        self.ebm, ebm_args = EBMTask.build_model_from_file(ebm_config, ebm_model, device)
        self.ebm.eval()
        self.ebm_preprocess = EBMTask.build_preprocess_fn(ebm_args, False)
        conf = _load_yaml(langevin_config)
        conf.pop("batch_size", None)
        conf.pop("record_every", None)
        conf.update({k: v for k, v in langevin_overrides.items() if v is not None})
        try:
            self.sampler = langevin_from_config(conf)
        except ValueError as e:  # a bad value in the decode config or among the overrides
            where = langevin_config if isinstance(langevin_config, str) else "the Langevin options"
            raise EbmError(f"{where}: {e}; fix the value") from None
        fe = dict(ebm_args.feats_extract_conf or {})
        self.settings = FeatureSettings(fe.get("fs", 22050), fe.get("n_fft", 1024), fe.get("hop_length", 256),
                                        fe.get("win_length"), fe.get("n_mels", 80), fe.get("fmin", 80),
                                        fe.get("fmax", 7600))
        self.vocoder = load_vocoder(vocoder_file, self.settings, griffin_lim_iters, device)
        self.device = device
        self._unk = {i for i, t in enumerate(ebm_args.token_list) if t == "<unk>"}

    @property
    def fs(self):
        return self.settings.fs

    def _tokens(self, text):
        from ebm.text_check import transcript_problem  # the rule stages 1-2 apply to the corpus

        cleaner = getattr(self.ebm_preprocess, "text_cleaner", None)
        problem = transcript_problem(text, cleaner.cleaner_types if cleaner is not None else None)
        if problem is not None:
            raise EbmError(problem)
        ids = np.asarray(self.ebm_preprocess("utt", {"text": text})["text"])
        if ids.size == 0:
            raise EbmError(f"no tokens are left of {text!r} after the recipe's cleaner")
        if self._unk and np.isin(ids, list(self._unk)).any():
            raise EbmError(f"{text!r} has characters outside the model's token list (they would be read as "
                           "<unk>); spell them out or remove them")
        return torch.as_tensor(ids, device=self.device)

    @torch.no_grad()
    def __call__(self, text):
        tokens = self._tokens(text)
        hyp = self.tacotron2(text)["feat_gen_denorm"].to(self.device)
        lengths = torch.tensor([hyp.shape[0]], device=self.device)
        out = self.ebm.inference(tokens[None], torch.tensor([len(tokens)], device=self.device), hyp[None], lengths,
                                 self.sampler)
        res, refined = out["result"], out["feat_gen_denorm"]
        problem = output_problem(res.feats[0])
        if problem is not None:
            raise EbmError(f"the Langevin chain's output is not vocoded: {problem}. Set max_abs (e.g. 10) in the "
                           "Langevin config so that a chain leaving the normalised range stops at its last sane "
                           "state, or lower step_size")
        if res.stopped[0]:
            logging.warning(f"the Langevin chain stopped at step {int(res.stop_step[0])} ({res.reasons[0]}); "
                            "its last sane state is used")
        feat = refined[0].cpu().numpy()
        return {"wav": self.vocoder(feat), "feat_tacotron2": hyp.cpu().numpy(), "feat_ebm": feat,
                "energy": res.energies[0].cpu().numpy(), "stopped": bool(res.stopped[0])}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tts_config", required=True, help="Tacotron 2's config.yaml (exp/tts_*/config.yaml)")
    p.add_argument("--tts_model", required=True, help="Tacotron 2's .pth")
    p.add_argument("--tts_inference_config", default=None, help="Tacotron 2's decoding options (YAML)")
    p.add_argument("--ebm_config", required=True, help="the EBM's config.yaml (exp/ebm_*/config.yaml)")
    p.add_argument("--ebm_model", required=True, help="the EBM's .pth")
    p.add_argument("--langevin_config", default=None, help="conf/decode_ebm.yaml")
    p.add_argument("--steps", type=int, default=None, help="overrides the config (0: Tacotron 2 alone)")
    p.add_argument("--step_size", type=float, default=None)
    p.add_argument("--sigma", type=float, default=None)
    p.add_argument("--vocoder_file", default="", help="parallel-wavegan .pkl; empty: Griffin-Lim")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the sentence to say")
    src.add_argument("--text_file", help="Kaldi text (utt text): one wav per line into --output_dir")
    p.add_argument("--output", default=None, help="wav path for --text")
    p.add_argument("--output_dir", default=None, help="directory for --text_file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ngpu", type=int, default=0)
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    if args.text is not None and not args.output:
        raise EbmError("--text needs --output (a .wav path)")
    if args.text_file and not args.output_dir:
        raise EbmError("--text_file needs --output_dir")
    tts = EBMText2Speech(args.tts_config, args.tts_model, args.ebm_config, args.ebm_model, args.langevin_config,
                         args.vocoder_file, args.tts_inference_config, device="cuda" if args.ngpu > 0 else "cpu",
                         seed=args.seed, steps=args.steps, step_size=args.step_size, sigma=args.sigma)
    if args.text is not None:
        jobs = [("text", args.text, args.output)]
    else:
        os.makedirs(args.output_dir, exist_ok=True)
        jobs = [(k, t, os.path.join(args.output_dir, f"{k}.wav")) for k, t in read_scp(args.text_file,
                                                                                        allow_empty_value=True)]
    for key, text, path in jobs:
        try:
            out = tts(text)
        except EbmError as e:
            raise EbmError(f"{key}: {e}") from None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp.wav"
        sf.write(tmp, out["wav"], tts.fs, subtype="PCM_16")
        os.replace(tmp, path)
        e = out["energy"]
        logging.info(f"{key}: {len(out['wav']) / tts.fs:.2f} s, energy {e[0]:.4g} -> {e[-1]:.4g}"
                     f"{' (chain stopped early)' if out['stopped'] else ''} -> {path}")


if __name__ == "__main__":
    run(main)
