"""Benchmark: Langevin refinement against Tacotron 2's own decoding, on the same utterances, machine and run.

Not a test: it measures. Each setting runs in a fresh worker process, so that its peak memory (max RSS on the
CPU, ``torch.cuda.max_memory_allocated`` on a GPU) is its own. First Tacotron 2 decodes the utterances
free-running, one at a time as ESPnet's inference does; its outputs are the initial hypotheses of every
Langevin setting. Then Langevin runs at each step count (at ``--batch_size``), and at a fixed step count for each
batch size (batch 1 = one utterance at a time). Writes a markdown table and the same numbers as JSON.

    python -m ebm.bin.benchmark_langevin --tts_exp exp/tts_X --ebm_exp exp/ebm_Y --text dump/raw/eval1/text \\
        --langevin_config conf/decode_ebm.yaml --output exp/benchmark/langevin
"""

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import yaml

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, write_atomic


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tts_exp", required=True, help="has config.yaml and --tts_model")
    p.add_argument("--tts_model", default="train.loss.ave.pth")
    p.add_argument("--tts_inference_config", default=None)
    p.add_argument("--ebm_exp", required=True, help="has config.yaml and --ebm_model")
    p.add_argument("--ebm_model", default="valid.refine_gain.best.pth")
    p.add_argument("--langevin_config", default=None, help="sampler options (steps and batch_size are swept)")
    p.add_argument("--text", required=True, help="Kaldi text; the first --num_utts utterances are used")
    p.add_argument("--num_utts", type=int, default=16)
    p.add_argument("--steps", default="1 10 100 300")
    p.add_argument("--batch_size", type=int, default=8, help="for the step sweep")
    p.add_argument("--batch_sizes", default="1 2 4 8 16", help="for the batch sweep")
    p.add_argument("--batch_sweep_steps", type=int, default=10)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--output", required=True, help="prefix: OUTPUT.md and OUTPUT.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def peak_memory_mb(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(job):
    """One measurement in this (fresh) process; prints one JSON line."""
    device = job["device"]
    with contextlib.redirect_stdout(io.StringIO()):
        from espnet2.bin.tts_inference import Text2Speech

        from ebm.task import EBMTask
    from ebm.decode_options import DECODE_KEYS
    from ebm.langevin import langevin_from_config

    texts = job["texts"]
    if job["kind"] == "tacotron2":
        conf = {}
        if job.get("tts_inference_config"):
            with open(job["tts_inference_config"]) as f:
                conf = {k: v for k, v in (yaml.safe_load(f) or {}).items() if k in DECODE_KEYS}
        t2s = Text2Speech(job["tts_config"], job["tts_model"], device=device, always_fix_seed=True, seed=0, **conf)
        t2s(texts[0][1])  # warm-up
        feats, t0 = {}, time.perf_counter()
        for key, text in texts:
            with torch.no_grad():
                feats[key] = t2s(text)["feat_gen_denorm"].cpu().numpy()
        seconds = time.perf_counter() - t0
        np.savez(job["hyp_file"], **feats)
        frames = sum(len(f) for f in feats.values())
        return {"seconds": seconds, "frames": frames, "peak_mb": peak_memory_mb(device)}

    model, args = EBMTask.build_model_from_file(job["ebm_config"], job["ebm_model"], device)
    model.eval()
    pre = EBMTask.build_preprocess_fn(args, False)
    hyps = np.load(job["hyp_file"])
    conf = dict(job["langevin"], steps=job["steps"])
    sampler = langevin_from_config(conf)
    items = sorted(((k, t) for k, t in texts), key=lambda kt: len(hyps[kt[0]]), reverse=True)

    def batches():
        for s in range(0, len(items), job["batch_size"]):
            chunk = items[s:s + job["batch_size"]]
            tok = [torch.as_tensor(pre(k, {"text": t})["text"]) for k, t in chunk]
            ys = [torch.as_tensor(hyps[k]) for k, _ in chunk]
            tl, yl = torch.tensor([len(x) for x in tok]), torch.tensor([len(y) for y in ys])
            text = torch.nn.utils.rnn.pad_sequence(tok, batch_first=True).to(device)
            y = torch.nn.utils.rnn.pad_sequence(ys, batch_first=True).to(device)
            yield text, tl.to(device), y, yl.to(device)

    prepared = list(batches())
    warm = langevin_from_config(dict(conf, steps=1))
    model.inference(*prepared[0], warm)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    stopped = 0
    for text, tl, y, yl in prepared:
        stopped += int(model.inference(text, tl, y, yl, sampler)["result"].stopped.sum())
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "frames": int(sum(len(hyps[k]) for k, _ in items)), "stopped": stopped,
            "peak_mb": peak_memory_mb(device)}


def spawn(job):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "-m", "ebm.bin.benchmark_langevin", "--worker", json.dumps(job),
                           "--tts_exp", "-", "--ebm_exp", "-", "--text", "-", "--output", "-"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise EbmError(f"benchmark worker ({job['kind']}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(worker(json.loads(args.worker))))
        return
    setup_logging()
    import logging

    device = "cuda" if args.ngpu > 0 else "cpu"
    texts = read_scp(args.text)[: args.num_utts]
    langevin = {}
    if args.langevin_config:
        with open(args.langevin_config) as f:
            langevin = yaml.safe_load(f) or {}
    langevin = {k: v for k, v in langevin.items() if k not in ("batch_size", "record_every", "steps")}
    with open(os.path.join(args.ebm_exp, "config.yaml")) as f:
        fe = (yaml.safe_load(f) or {}).get("feats_extract_conf") or {}
    hop, fs = int(fe.get("hop_length", 256)), int(fe.get("fs", 22050))
    common = {"device": device, "texts": texts}
    with tempfile.TemporaryDirectory() as tmp:
        hyp_file = os.path.join(tmp, "hyps.npz")
        logging.info(f"Tacotron 2 free-running decoding of {len(texts)} utterances (one at a time)")
        t2 = spawn(dict(common, kind="tacotron2", tts_config=os.path.join(args.tts_exp, "config.yaml"),
                        tts_model=os.path.join(args.tts_exp, args.tts_model),
                        tts_inference_config=args.tts_inference_config, hyp_file=hyp_file))
        audio_s = t2["frames"] * hop / fs
        rows = [dict(system="Tacotron 2 (free-running)", steps=None, batch_size=1, **t2)]
        ebm = dict(common, kind="langevin", ebm_config=os.path.join(args.ebm_exp, "config.yaml"),
                   ebm_model=os.path.join(args.ebm_exp, args.ebm_model), hyp_file=hyp_file, langevin=langevin)
        for steps in map(int, args.steps.split()):
            logging.info(f"Langevin, {steps} steps, batch {args.batch_size}")
            rows.append(dict(system="Langevin", steps=steps, batch_size=args.batch_size,
                             **spawn(dict(ebm, steps=steps, batch_size=args.batch_size))))
        for bs in map(int, args.batch_sizes.split()):
            if bs == args.batch_size and args.batch_sweep_steps in [r["steps"] for r in rows]:
                continue
            logging.info(f"Langevin, {args.batch_sweep_steps} steps, batch {bs}")
            rows.append(dict(system="Langevin", steps=args.batch_sweep_steps, batch_size=bs,
                             **spawn(dict(ebm, steps=args.batch_sweep_steps, batch_size=bs))))
    for r in rows:
        r["rtf"] = r["seconds"] / audio_s
        r["frames_per_s"] = r["frames"] / r["seconds"]
        r["ratio_to_tacotron2"] = r["seconds"] / t2["seconds"]
    cpu = os.environ.get("OMP_NUM_THREADS", "1")  # what the workers set
    md = [f"# Langevin decoding benchmark\n\n{len(texts)} utterances of `{args.text}` ({audio_s:.1f} s of audio), "
          f"device {device}" + (f" ({torch.cuda.get_device_name(0)})" if device == "cuda" else
                                f", {cpu} thread(s) per process") + f"; EBM `{args.ebm_exp}`.\n\n",
          "| system | steps | batch | seconds | RTF | frames/s | peak MB | x Tacotron 2 |\n|---|---|---|---|---|---|---|---|\n"]
    for r in rows:
        md.append(f"| {r['system']} | {r['steps'] if r['steps'] is not None else '-'} | {r['batch_size']} | "
                  f"{r['seconds']:.2f} | {r['rtf']:.3f} | {r['frames_per_s']:.0f} | {r['peak_mb']:.0f} | "
                  f"{r['ratio_to_tacotron2']:.2f} |\n")
    sweep = {r["batch_size"]: r["seconds"] for r in rows if r["steps"] == args.batch_sweep_steps}
    if 1 in sweep and len(sweep) > 1:
        best = min((s, b) for b, s in sweep.items() if b != 1)
        md.append(f"\nBatching ({args.batch_sweep_steps} steps): one utterance at a time {sweep[1]:.2f} s, best batch "
                  f"{best[1]} {best[0]:.2f} s ({sweep[1] / best[0]:.2f}x faster).\n")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    write_atomic(f"{args.output}.md", "".join(md))
    write_atomic(f"{args.output}.json", json.dumps({"device": device, "audio_seconds": audio_s, "rows": rows},
                                                   indent=1) + "\n")
    print("".join(md))


if __name__ == "__main__":
    run(main)
