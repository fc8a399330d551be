"""The cost of each stage's unit of work on this machine, and the projected wall time of each stage per corpus.

Measured side by side in one process, one thread (a recipe runs one job per core), CPU seconds per second of
audio, with random weights (a network's cost depends on its size and its inputs' lengths, not on its weights):

- Tacotron 2 training (stage 3): forward, backward and Adam over a batch, per config;
- EBM training (stage 5): the same for the energy network and its criteria, per config;
- one Langevin step (stage 6) through ``ESPnetEBMModel.inference``;
- stage 7 on real recordings (``--wav_scp``): Griffin-Lim, the per-signal analysis that MCD and F0 need (mel-cepstra
  and WORLD harvest), DistillMOS, and the mel distance's DTW;
- the start of a job's process (CPU seconds of its imports), which stages 6 and 7 pay per set (one Langevin
  decoding call for the whole grid; one vocoding and one scoring call for all systems).

Stage 4 (Tacotron 2 decoding) comes from ``ebm.bin.benchmark_decoding``'s JSON (``--decoding_json``). The
projection multiplies each unit by what a corpus's recipe asks of it (``CORPORA``: set sizes, mean duration,
epochs, updates, swept settings and systems, read from the recipe configs where they are written) and divides
the decoding and scoring stages by the jobs that run side by side. Training epochs of Tacotron 2 are the rule's
business (early stopping): the table gives the cost of one epoch and of the stated number.
"""

import argparse
import json
import logging
import math
import os

import numpy as np

from ebm.benchmarking import build_ebm, build_tacotron2, char_token_list, timed
from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, read_yaml, write_atomic

FS, N_FFT, N_SHIFT, N_MELS = 22050, 1024, 256, 80
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the configs' paths start here

# What each recipe asks of each unit (from run.sh, local/data.sh and the configs named). t2_epochs: the epochs a
# projection of stage 3 assumes (None: the pretrained model is imported, seconds). samples: run.sh's
# --baseline_num_samples. settings: the steps of each setting run.sh sweeps (steps x lambdas). Stage 7 scores per set
# analysis-synthesis, Tacotron 2, 3 controls and the settings. Mean durations: of the 400 mini_espeak clips and the
# 300 cathy clips at hand; LJSpeech: 24 h over 13,100 clips.
CORPORA = {
    "mini_espeak": dict(train=340, dev=30, eval=30, seconds=2.62, t2_epochs=100, samples=8,
                        t2_config="egs/mini_espeak/tts1/conf/tuning/train_tacotron2_small.yaml",
                        ebm_config="egs/mini_espeak/tts1/conf/tuning/train_ebm_score_hyps.yaml",
                        settings=[1, 2, 3] * 2),
    "cathy": dict(train=200, dev=50, eval=50, seconds=2.96, t2_epochs=100, samples=0,
                  t2_config="egs/cathy/tts1/conf/tuning/train_tacotron2_small.yaml",
                  ebm_config="egs/cathy/tts1/conf/tuning/train_ebm_score.yaml",
                  settings=[1, 2, 3, 4, 8] * 3),
    "ljspeech": dict(train=12600, dev=250, eval=250, seconds=24 * 3600 / 13100, t2_epochs=None, samples=0,
                     t2_config="egs/ljspeech/tts1/conf/tuning/train_tacotron2.yaml",
                     ebm_config="egs/ljspeech/tts1/conf/tuning/train_ebm_score.yaml",
                     settings=[1, 2, 3, 4, 8] * 3),
}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wav_scp", required=True, help="recordings for the stage 7 units (e.g. mini's dump/raw/dev)")
    p.add_argument("--text", required=True, help="their Kaldi text (token list and lengths)")
    p.add_argument("--num_utts", type=int, default=8)
    p.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    p.add_argument("--corpus_seconds", nargs="*", default=[], metavar="NAME=SECONDS",
                   help="mean seconds per utterance of a corpus whose CORPORA entry leaves it unset (measure it from "
                        "its wav.scp); default: the --wav_scp sample's mean")
    p.add_argument("--t2_epochs", nargs="*", default=[], metavar="NAME=EPOCHS",
                   help="Tacotron 2 epochs to project stage 3 with (where early stopping ended a run); default: "
                        "CORPORA's assumption")
    p.add_argument("--decoding_json", nargs="*", default=[], metavar="NAME=JSON",
                   help="ebm.bin.benchmark_decoding --json outputs, per corpus whose model size they measured")
    p.add_argument("--updates", type=int, default=3, help="timed training updates per model (after one warm-up)")
    p.add_argument("--max_batch", type=int, default=16,
                   help="utterances in a measured training batch (cost per audio second hardly depends on it)")
    p.add_argument("--griffin_lim_iters", type=int, default=32)
    p.add_argument("--jobs", type=int, default=2, help="parallel jobs of the decoding and scoring stages (cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="prefix: OUTPUT.md and OUTPUT.json")
    return p


def per_second(seconds, audio_seconds):
    return seconds[0] / max(audio_seconds, 1e-9)


def utterances_per_update(config, seconds, n_mels=N_MELS):
    """Utterances in one of a config's batches: batch_size, or at ``numel`` what batch_bins hold at this length."""
    if config.get("batch_type") == "numel" and config.get("batch_bins"):
        return max(1, int(config["batch_bins"] // (seconds * FS / N_SHIFT * n_mels)))
    return int(config.get("batch_size", 16))


def batch_of(wavs, tokens, n):
    """The first ``n`` utterances (cycled), padded: (text, lengths, speech, lengths, audio seconds)."""
    import torch

    idx = sorted((i % len(wavs) for i in range(n)), key=lambda i: -len(tokens[i]))  # as ESPnet's sorted batches
    speech = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(wavs[i]) for i in idx], batch_first=True)
    text = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(tokens[i]) for i in idx], batch_first=True)
    return (text, torch.tensor([len(tokens[i]) for i in idx]), speech, torch.tensor([len(wavs[i]) for i in idx]),
            sum(len(wavs[i]) for i in idx) / FS)


def training_unit(model, batch, updates, extra=None):
    """CPU seconds per second of audio of one update (forward, backward, Adam), after one warm-up update."""
    import torch

    text, text_lengths, speech, speech_lengths, audio = batch
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def update():
        opt.zero_grad()
        loss = model(text, text_lengths, speech, speech_lengths, **(extra or {}))[0]
        loss.backward()
        opt.step()

    update()
    _, sec = timed(lambda: [update() for _ in range(updates)])
    return per_second(sec, audio * updates)


def langevin_unit(ebm, batch, steps=4):
    """CPU seconds per second of audio of one Langevin step (the model's inference on a batch)."""
    import torch

    from ebm.langevin import LangevinSampler

    text, text_lengths, speech, speech_lengths, audio = batch
    with torch.no_grad():
        feats, lengths = ebm.feats_extract(speech, speech_lengths)
    sampler = LangevinSampler(steps=steps, step_size=0.1, sigma=0.0)
    ebm.eval()
    ebm.inference(text, text_lengths, feats, lengths, sampler)  # warm-up
    _, sec = timed(lambda: ebm.inference(text, text_lengths, feats, lengths, sampler))
    return per_second(sec, audio * steps)


def stage7_units(wavs, iters):
    """CPU seconds per second of audio of each stage 7 unit, on real recordings."""
    from ebm import metrics
    from ebm.vocoder import FeatureSettings, GriffinLim

    settings = FeatureSettings(fs=FS, n_fft=N_FFT, n_shift=N_SHIFT, n_mels=N_MELS, fmin=80, fmax=7600)
    vocoder = GriffinLim(settings, iters)
    audio = sum(len(w) for w in wavs) / FS
    mels, sec = timed(lambda: [settings.logmel(w) for w in wavs])
    units = {"mel extraction": per_second(sec, audio)}
    gens, sec = timed(lambda: [vocoder(m) for m in mels])
    units[f"Griffin-Lim ({iters} iterations)"] = per_second(sec, audio)
    refs, sec = timed(lambda: [metrics.analyse(w, FS) for w in wavs])
    units["analysis (mel-cepstra, WORLD harvest)"] = per_second(sec, audio)
    gen_a = [metrics.analyse(g, FS) for g in gens]
    _, sec = timed(lambda: [metrics.score_analyses(r, g) for r, g in zip(refs, gen_a)])
    units["MCD and F0 errors (DTW)"] = per_second(sec, audio)
    _, sec = timed(lambda: [metrics.mel_distance(m, m[::-1]) for m in mels])
    units["mel distance (DTW)"] = per_second(sec, audio)
    metrics.predicted_mos(gens[0], FS)  # loads the model
    _, sec = timed(lambda: [metrics.predicted_mos(g, FS) for g in gens])
    units["predicted MOS (DistillMOS)"] = per_second(sec, audio)
    return units


# What a job of each stage imports before its first utterance (a new process per job, set and stage):
# the EBM task (ESPnet's TTS task), the vocoder (librosa), the scorer (WORLD, SPTK and DistillMOS with its weights).
JOB_STARTS = {
    "Langevin decoding job": "import ebm.task, ebm.langevin",
    "vocoding job": "import librosa, soundfile, ebm.vocoder, ebm.audio",
    "scoring job": "import pyworld, pysptk, ebm.metrics; ebm.metrics._mos_model()",
}


def job_start_costs(repeats=2):
    """CPU seconds of a fresh Python process that imports what each stage's job imports (the best of a few)."""
    import resource
    import subprocess
    import sys

    costs = {}
    for name, code in JOB_STARTS.items():
        best = math.inf
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            best = min(best, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        costs[f"start of a {name}"] = best
    return costs


def decoding_rtfs(path):
    """(free-running RTF at the best batch, teacher-forced RTF at the best batch, their rows' names)."""
    with open(path) as f:
        result = json.load(f)["results"][-1]
    fr = min((r for r in result["rows"] if r["name"].startswith("free_running batched")), key=lambda r: r["rtf"])
    tf = min((r for r in result["rows"] if r["name"].startswith("teacher_forced")), key=lambda r: r["rtf"])
    return fr["rtf"], tf["rtf"], f"{fr['name']}; {tf['name']} ({result['model']}, {path})"


def project(name, spec, units, seconds, decoding, jobs, t2_epochs=None):
    """{stage: (seconds, how)} for one corpus."""
    held = spec["dev"] + spec["eval"]
    train_audio = spec["train"] * seconds
    out = {}
    epochs = t2_epochs or spec["t2_epochs"]
    if epochs is None:
        out["3"] = (0.0, "imported pretrained model (seconds)")
    else:
        epoch = units[f"{name} Tacotron 2 update"] * train_audio
        how = "as a run ended by early stopping" if t2_epochs else "assumed: early stopping decides"
        out["3"] = (epoch * epochs, f"{epoch / 60:.1f} min per epoch x {epochs} epochs ({how})")
    # A Tacotron 2 trained here goes past its dev-loss rule (--train_extend), and the model kept two thirds of the
    # way is checked against it on dev: one more free-running dev decode (stage 4) and one more dev system (stage 7).
    checked = epochs is not None
    if decoding:
        fr, tf, how = decoding
        audio = (spec["train"] + held) * seconds
        check = spec["dev"] * seconds * fr if checked else 0.0
        out["4"] = ((audio * ((1 + spec["samples"]) * fr + tf) + check) / jobs,
                    f"{1 + spec['samples']} free-running + 1 teacher-forced decodes per text"
                    + (", and the model two thirds of the way on dev" if checked else "") + f", {jobs} jobs: {how}")
    ebm = read_yaml(os.path.join(REPO, spec["ebm_config"]), "EBM config")
    per_update = utterances_per_update(ebm, seconds)
    iters = ebm.get("num_iters_per_epoch") or math.ceil(spec["train"] * (1 + ebm.get("train_hyps", 0)) / per_update)
    utts = ebm.get("max_epoch", 1) * iters * per_update
    out["5"] = (units[f"{name} EBM update"] * utts * seconds,
                f"{ebm.get('max_epoch', 1)} epochs x {iters} updates x {per_update} utterances")
    steps = sum(spec["settings"])
    starts = 2 * units.get("start of a Langevin decoding job", 0.0)  # per set (dev, eval); jobs side by side
    out["6"] = (units[f"{name} Langevin step"] * steps * held * seconds / jobs + starts,
                f"{len(spec['settings'])} settings, {steps} steps in all, on {held} dev+eval utterances; a job per "
                "set and core for the whole grid")
    # dev: analysis-synthesis, Tacotron 2 (and its model two thirds of the way), 3 controls and every setting; eval:
    # the first two, the control and the setting dev chose (stage 7 evaluates eval at the dev choices only)
    on_dev, on_eval = 2 + int(checked) + 3 + len(spec["settings"]), 2 + 1 + 1
    per_system = sum(v for k, v in units.items() if k.startswith("stage 7 ") and "mel extraction" not in k
                     and "analysis" not in k)
    per_system += units["stage 7 analysis (mel-cepstra, WORLD harvest)"]  # the system's own signal
    ref = units["stage 7 analysis (mel-cepstra, WORLD harvest)"] + units["stage 7 mel extraction"]
    work = (on_dev * per_system + ref) * spec["dev"] + (on_eval * per_system + ref) * spec["eval"]
    starts = 2 * (units.get("start of a vocoding job", 0.0) + units.get("start of a scoring job", 0.0))  # per set
    out["7"] = (work * seconds / jobs + starts, f"{on_dev} systems x {spec['dev']} dev and {on_eval} x "
                                                f"{spec['eval']} eval utterances, {jobs} jobs")
    return out


def hms(seconds):
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    import torch

    torch.set_num_threads(1)
    from ebm.audio import read_wav

    texts = dict(read_scp(args.text))
    pairs = read_scp(args.wav_scp)[: args.num_utts]
    if not pairs:
        raise EbmError(f"{args.wav_scp} lists no recordings")
    wavs = [read_wav(path, key, "recording")[0] for key, path in pairs]
    mean_seconds = float(np.mean([len(w) for w in wavs])) / FS
    token_list = char_token_list([texts[k] for k, _ in pairs])
    index = {t: i for i, t in enumerate(token_list)}
    from espnet2.text.cleaner import TextCleaner

    clean = TextCleaner("tacotron")
    tokens = [[index.get("<space>" if c == " " else c, 1) for c in clean(texts[k])] + [len(token_list) - 1]
              for k, _ in pairs]
    units = {f"stage 7 {k}": v for k, v in stage7_units(wavs, args.griffin_lim_iters).items()}
    logging.info("stage 7 units measured")
    starts = job_start_costs()
    seconds = dict(s.split("=", 1) for s in args.corpus_seconds)
    t2_epochs = {k: int(v) for k, v in (s.split("=", 1) for s in args.t2_epochs)}
    decoding = {}
    for spec in args.decoding_json:
        name, _, path = spec.partition("=")
        decoding[name] = decoding_rtfs(path)
    projections = {}
    for name in args.corpora:
        spec = CORPORA[name]
        sec = float(seconds.get(name) or spec["seconds"] or mean_seconds)
        t2 = read_yaml(os.path.join(REPO, spec["t2_config"]), "Tacotron 2 config")
        model, n_t2, _ = build_tacotron2(t2["tts_conf"], token_list, FS, N_FFT, N_SHIFT, N_MELS, seed=args.seed)
        n = min(args.max_batch, utterances_per_update(t2, sec))
        units[f"{name} Tacotron 2 update"] = training_unit(model, batch_of(wavs, tokens, n), args.updates)
        del model
        ebm_conf = read_yaml(os.path.join(REPO, spec["ebm_config"]), "EBM config")
        ebm = build_ebm(ebm_conf, token_list, FS, N_FFT, N_SHIFT, N_MELS, seed=args.seed)
        batch = batch_of(wavs, tokens, min(args.max_batch, utterances_per_update(ebm_conf, sec)))
        with torch.no_grad():  # the hypotheses: the reference's own mel, slightly off (their values cost nothing)
            feats, lengths = ebm.feats_extract(batch[2], batch[3])
        extra = dict(tf_feats=feats + 0.1, tf_feats_lengths=lengths, fr_feats=feats + 0.1, fr_feats_lengths=lengths)
        units[f"{name} EBM update"] = training_unit(ebm, batch, args.updates, extra)
        units[f"{name} Langevin step"] = langevin_unit(ebm, batch_of(wavs, tokens, 8))
        n_ebm = sum(p.numel() for p in ebm.energy_network.parameters())
        logging.info(f"{name}: Tacotron 2 {n_t2 / 1e6:.1f}M, EBM {n_ebm / 1e6:.2f}M parameters measured")
        projections[name] = dict(seconds=sec, t2_params=n_t2, ebm_params=n_ebm,
                                 stages=project(name, spec, {**units, **starts}, sec, decoding.get(name), args.jobs,
                                                t2_epochs.get(name)))

    lines = [f"# Stage costs on this machine ({os.cpu_count()} cores, 1 thread per job, CPU)", "",
             f"Units: CPU seconds per second of audio, random weights, measured side by side on {len(wavs)} "
             f"recordings of {args.wav_scp} (mean {mean_seconds:.2f} s).", "", "| unit | CPU s per audio s |",
             "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in units.items()]
    lines += ["", "| per job (a new process) | CPU s |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in starts.items()]
    for name, p in projections.items():
        lines += ["", f"## {name}: projected wall time per stage ({p['seconds']:.2f} s per utterance; Tacotron 2 "
                      f"{p['t2_params'] / 1e6:.1f}M, EBM {p['ebm_params'] / 1e6:.2f}M parameters)", "",
                  "| stage | wall time | from |", "|---|---|---|"]
        lines += [f"| {k} | {hms(v)} | {how} |" for k, (v, how) in sorted(p["stages"].items())]
        ours = sum(v for k, (v, _) in p["stages"].items() if k != "3")
        lines += ["", f"Stages 4-7 (ours) together: {hms(ours)}; stage 3 (ESPnet's Tacotron 2 training): "
                      f"{hms(p['stages']['3'][0])}."]
    text = "\n".join(lines) + "\n"
    write_atomic(args.output + ".md", text)
    write_atomic(args.output + ".json", json.dumps(dict(units=units, job_starts=starts, projections=projections,
                                                        args=vars(args)), indent=1))
    print(text)


if __name__ == "__main__":
    run(main)
