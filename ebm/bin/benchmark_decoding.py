"""Throughput of Tacotron 2 decoding one utterance at a time (ESPnet's ``Text2Speech``, today's stage 4) against
batched decoding (``ebm.batch_decoding``), side by side in one process, for models the size of given configs.

Stage 4 decodes every text up to ten times (teacher-forced, the seeded free-running decode and the prenet-dropout
samples), autoregressively, so its cost at a large corpus is set by the decoder's per-step overhead; this measures
what batching buys on the machine it runs on. The models have random weights (no trained model is needed): their
stop token never fires, so every free-running decode is forced to a length proportional to its text
(``--frames_per_char``) in both paths, and the output says so. Batched free-running decodes pool ``--samples``
decodes per text, as stage 4 pools a text's seeded decode and its prenet-dropout samples (9 with mini_espeak's
``--baseline_num_samples 8``). Stage 4 sorts its decodes by length, so at a corpus's size a batch holds decodes
of nearly equal length that finish together; a few dozen texts of varied length decoded once each would make
every batch shrink as its short members finish, and measure that artefact rather than batching.
On a shared machine compare the ratios of the rows, which ran side by side, rather than absolute times: the rows
are timed in ``--repeats`` rounds, in turn, so that a slow spell falls on all of them alike, and each reports its
median.

Prints a table (utterances/s, frames/s, real-time factor, speed-up over one at a time) per model, and the projected
stage-4 time of a corpus (``--project_*``) from the measured real-time factors.
"""

import argparse
import contextlib
import io
import json
import logging
import math
import os
import tempfile

import numpy as np
import yaml

from ebm.benchmarking import build_tacotron2, char_token_list, timed
from ebm.cli import EbmError, run, setup_logging
from ebm.io import write_atomic


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", required=True, metavar="NAME=YAML",
                   help="Tacotron 2 training configs (their tts_conf sets the model size), e.g. "
                        "mini_espeak=egs/mini_espeak/tts1/conf/tuning/train_tacotron2_small.yaml")
    p.add_argument("--sentences", required=True, help="one text a line (e.g. egs/mini_espeak/tts1/local/sentences.txt)")
    p.add_argument("--last", type=int, default=30, help="use the last N lines (mini_espeak's eval set: 30)")
    p.add_argument("--batch_sizes", default="4,8,16,32")
    p.add_argument("--teacher_forced_batch_sizes", default="16")
    p.add_argument("--samples", type=int, default=9,
                   help="batched free-running decodes per text (stage 4 with --baseline_num_samples 8: 9)")
    p.add_argument("--one_at_a_time_texts", type=int, default=0,
                   help="decode only the first N texts in the one-at-a-time rows (0: all, the default). A subset "
                        "saves time but biases the speed-ups: the attention's cost per frame grows with the text's "
                        "length, so rates (frames/s, RTF) of different texts do not compare")
    p.add_argument("--frames_per_char", type=float, default=5.7,
                   help="forced length: frames per character of the cleaned text (about LJSpeech's speaking rate "
                        "at 22.05 kHz, hop 256)")
    p.add_argument("--fs", type=int, default=22050)
    p.add_argument("--n_fft", type=int, default=1024)
    p.add_argument("--n_shift", type=int, default=256)
    p.add_argument("--n_mels", type=int, default=80)
    p.add_argument("--cleaner", default="tacotron")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds over every row in turn; each row reports its median (a shared machine is noisy)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (stage 4 runs one job per core)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--project_texts", type=int, default=13100, help="corpus to project stage 4 for (LJSpeech)")
    p.add_argument("--project_seconds", type=float, default=6.5, help="mean audio seconds per text")
    p.add_argument("--project_free_running", type=int, default=9, help="free-running decodes per text")
    p.add_argument("--project_teacher_forced", type=int, default=1, help="teacher-forced decodes per text")
    p.add_argument("--project_jobs", type=int, default=2, help="parallel decoding jobs (cores)")
    p.add_argument("--project_model", default=None, help="NAME of --configs to project with (default: the last)")
    p.add_argument("--json", default=None, help="also write the measurements here")
    return p


def row(name, n_utts, frames, seconds, fs, n_shift):
    cpu, wall = seconds
    audio = frames * n_shift / fs
    return dict(name=name, utterances=n_utts, frames=int(frames), cpu_seconds=round(cpu, 3),
                wall_seconds=round(wall, 3), utt_per_s=n_utts / cpu, frames_per_s=frames / cpu, rtf=cpu / audio)


def benchmark_model(name, config_path, texts, args):
    """Rows for one model size: ESPnet one at a time, then batched, free-running and teacher-forced."""
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        from espnet2.bin.tts_inference import Text2Speech
        from espnet2.text.cleaner import TextCleaner
        from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from ebm.batch_decoding import BatchDecoder

    with open(config_path) as f:
        config = yaml.safe_load(f)
    if config.get("tts") != "tacotron2":
        raise EbmError(f"{config_path}: tts is {config.get('tts')!r}; this benchmarks Tacotron 2 only")
    cleaner = TextCleaner(args.cleaner)
    token_list = char_token_list(texts, args.cleaner)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        _, n_params, (config_file, model_file) = build_tacotron2(
            config["tts_conf"], token_list, args.fs, args.n_fft, args.n_shift, args.n_mels, args.cleaner, args.seed,
            workdir)
        logging.disable(logging.INFO)  # Text2Speech logs the whole network
        t2s = Text2Speech(config_file, model_file, device=args.device, threshold=2.0, maxlenratio=10.0)
        logging.disable(logging.NOTSET)
    tokens = [torch.as_tensor(t2s.preprocess_fn("<dummy>", dict(text=t))["text"]) for t in texts]
    frames = [max(1, round(args.frames_per_char * len(cleaner(t)))) for t in texts]
    r = t2s.model.tts.dec.reduction_factor
    out_frames = [math.ceil(n / r) * r for n in frames]
    logging.info(f"{name}: {n_params / 1e6:.1f}M parameters, {len(texts)} texts, forced lengths "
                 f"{min(out_frames)}-{max(out_frames)} frames ({args.frames_per_char} per character)")
    decoder = BatchDecoder(t2s.model, threshold=2.0)
    rng = np.random.default_rng(args.seed)
    speeches = [torch.from_numpy((0.1 * rng.standard_normal((n - 1) * args.n_shift)).astype(np.float32))
                for n in frames]

    n_one = args.one_at_a_time_texts or len(texts)
    vocoder = t2s.vocoder

    def espnet_one_at_a_time(teacher_forced, griffin_lim):
        """Text2Speech as stage 4 calls it; it also runs its Griffin-Lim vocoder (8 iterations) on every output,
        which stage 4 discards: ``griffin_lim=False`` times the decode alone."""
        set_all_random_seed(args.seed)
        t2s.vocoder = vocoder if griffin_lim else None
        total = 0
        for tok, n, speech in list(zip(tokens, frames, speeches))[:n_one]:
            conf = dict(use_teacher_forcing=teacher_forced, maxlenratio=(n + 0.5) / (len(tok) + 1), threshold=2.0)
            with torch.no_grad():
                out = t2s(tok, speech=speech if teacher_forced else None, decode_conf=conf)
            total += len(out["feat_gen"])
        t2s.vocoder = vocoder
        return total

    def batched(batch_size, teacher_forced, samples, n_texts=len(texts)):
        set_all_random_seed(args.seed)
        jobs = sorted(((i, s) for i in range(n_texts) for s in range(samples)), key=lambda j: -frames[j[0]])
        total = 0
        for start in range(0, len(jobs), batch_size):
            idx = [i for i, _ in jobs[start:start + batch_size]]
            outs = decoder.decode([tokens[i] for i in idx],
                                  speeches=[speeches[i] for i in idx] if teacher_forced else None,
                                  num_frames=None if teacher_forced else [frames[i] for i in idx])
            total += sum(len(o["feat_gen"]) for o in outs)
        return total, len(jobs)

    fs, hop = args.fs, args.n_shift
    bs_fr = [int(b) for b in args.batch_sizes.split(",") if b]
    bs_tf = [int(b) for b in args.teacher_forced_batch_sizes.split(",") if b]
    plan = [("free_running stage 4 today (+Griffin-Lim)", lambda: (espnet_one_at_a_time(False, True), n_one)),
            ("free_running espnet one at a time", lambda: (espnet_one_at_a_time(False, False), n_one)),
            ("free_running batched, batch 1", lambda: batched(1, False, 1, n_one))]
    plan += [(f"free_running batched, batch {bs}", lambda bs=bs: batched(bs, False, args.samples)) for bs in bs_fr]
    plan += [("teacher_forced espnet one at a time", lambda: (espnet_one_at_a_time(True, False), n_one))]
    plan += [(f"teacher_forced batched, batch {bs}", lambda bs=bs: batched(bs, True, 1)) for bs in bs_tf]
    # Rounds in turn, so that a slow spell of a shared machine falls on every row alike; each row keeps its median.
    times = {label: [] for label, _ in plan}
    counts = {}
    for _ in range(args.repeats):
        for label, fn in plan:
            counts[label], sec = timed(fn)
            times[label].append(sec)
    forced = sum(out_frames[:n_one])
    if counts["free_running espnet one at a time"][0] != forced:
        raise EbmError(f"ESPnet decoded {counts['free_running espnet one at a time'][0]} frames, not the forced "
                       f"{forced}")
    for label, _ in plan:
        (n, jobs), secs = counts[label], times[label]
        median = tuple(float(np.median([t[i] for t in secs])) for i in range(2))
        rows.append(dict(row(label, jobs, n, median, fs, hop), cpu_seconds_rounds=[round(t[0], 3) for t in secs]))
    for mode in ["free_running", "teacher_forced"]:
        base = next(x for x in rows if x["name"] == f"{mode} espnet one at a time")
        for x in rows:
            if x["name"].startswith(mode):
                x["speedup"] = base["rtf"] / x["rtf"]
    today = rows[0]
    for x in rows:
        if x["name"].startswith("free_running"):
            x["speedup_vs_today"] = today["rtf"] / x["rtf"]
    return dict(model=name, config=config_path, parameters=n_params, reduction_factor=r, rows=rows)


def projection(result, args):
    """Stage-4 hours for the projected corpus at one at a time and at the best batch, from the measured RTFs."""
    rows = result["rows"]
    fr_rows = [x for x in rows if x["name"].startswith("free_running batched")]
    best_fr = min(fr_rows, key=lambda x: x["rtf"])
    tf_rows = [x for x in rows if x["name"].startswith("teacher_forced batched")]
    best_tf = min(tf_rows, key=lambda x: x["rtf"]) if tf_rows else None
    audio = args.project_texts * args.project_seconds

    def hours(fr, tf):
        return audio * (args.project_free_running * fr + args.project_teacher_forced * tf) / args.project_jobs / 3600

    tf_one = next(x["rtf"] for x in rows if x["name"] == "teacher_forced espnet one at a time")
    today = hours(rows[0]["rtf"], tf_one)
    one = hours(next(x["rtf"] for x in rows if x["name"] == "free_running espnet one at a time"), tf_one)
    best = hours(best_fr["rtf"], best_tf["rtf"] if best_tf else tf_one)
    return dict(today_hours=today, one_at_a_time_hours=one, batched_hours=best, best_free_running=best_fr["name"],
                best_teacher_forced=best_tf["name"] if best_tf else None)


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    import torch

    torch.set_num_threads(args.threads)
    with open(args.sentences, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    if not texts:
        raise EbmError(f"{args.sentences} has no sentences")
    texts = texts[-args.last:] if args.last else texts
    if args.repeats < 1:
        raise EbmError(f"--repeats {args.repeats}: give at least one round")
    configs = []
    for spec in args.configs:
        name, sep, path = spec.partition("=")
        if not sep or not os.path.isfile(path):
            raise EbmError(f"--configs {spec!r}: give NAME=PATH of an existing Tacotron 2 config")
        configs.append((name, path))
    print(f"Tacotron 2 decoding throughput on {len(texts)} texts (last {args.last} of {args.sentences}), "
          f"{args.threads} thread(s), {args.device}.\nRandom weights: the stop token never fires, so every "
          f"free-running decode is FORCED to {args.frames_per_char} frames per character, in both paths. "
          f"Batched free-running rows decode {args.samples} samples per text.", flush=True)
    results = []
    for name, path in configs:
        result = benchmark_model(name, path, texts, args)
        results.append(result)
        print(f"\n{name} ({path}: {result['parameters'] / 1e6:.1f}M parameters, reduction factor "
              f"{result['reduction_factor']})")
        print(f"{'':42s} {'decodes':>6s} {'frames':>8s} {'cpu s':>7s} {'wall s':>7s} {'utt/s':>7s} {'frames/s':>9s} "
              f"{'RTF':>7s} {'speed-up':>8s} {'vs today':>8s}")
        for x in result["rows"]:
            vs_today = f"{x['speedup_vs_today']:7.1f}x" if "speedup_vs_today" in x else ""
            print(f"{x['name']:42s} {x['utterances']:6d} {x['frames']:8d} {x['cpu_seconds']:7.2f} "
                  f"{x['wall_seconds']:7.2f} {x['utt_per_s']:7.2f} "
                  f"{x['frames_per_s']:9.0f} {x['rtf']:7.3f} {x['speedup']:7.1f}x {vs_today:>8s}", flush=True)
        print("Rates (utt/s, frames/s, RTF) from CPU seconds. speed-up: over ESPnet's decode one at a time (same "
              "mode); vs today: over stage 4's one-at-a-time call, which also runs Griffin-Lim on each output")
    target = next((r for r in results if r["model"] == args.project_model), results[-1])
    proj = projection(target, args)
    print(f"\nProjected stage 4 for {args.project_texts} texts x ({args.project_free_running} free-running + "
          f"{args.project_teacher_forced} teacher-forced) decodes of {args.project_seconds} s, {args.project_jobs} "
          f"jobs of {args.threads} thread(s), from {target['model']}'s measured RTFs: today "
          f"{proj['today_hours']:.1f} h; one at a time without Griffin-Lim {proj['one_at_a_time_hours']:.1f} h; "
          f"batched ({proj['best_free_running']}"
          f"{', ' + proj['best_teacher_forced'] if proj['best_teacher_forced'] else ''}) "
          f"{proj['batched_hours']:.1f} h.")
    if args.json:
        write_atomic(args.json, json.dumps(dict(results=results, projection=proj, args=vars(args)), indent=1))


if __name__ == "__main__":
    run(main)
