"""Refine initial hypotheses (Tacotron 2's stage 4 decodes) with Langevin MCMC on a trained EBM.

Batched over utterances sorted by length. Writes ESPnet's decode layout, ``OUTPUT_DIR/{norm,denorm}/feats.scp``
(+ .npy), and beside it what the chains did: ``energy`` (one line per utterance: the energy at every recorded
step), ``stopped`` (utterances whose chain was stopped, with the step and the reason) and ``rtf`` (seconds and
frames per utterance, the batch's time shared by frames).

With ``--expert`` the chain runs on a product of experts (:mod:`ebm.product_of_experts`): ``--weight`` times this
EBM's energy plus each expert's weighted energy.

``--settings DECODE_DIR/settings.yaml`` decodes with the settings an earlier decode wrote (tts.sh's
``--ebm_decode_like``): its sampler options and batch size, its EBM and, for a product of experts, its experts
and weights. Decode directory names are labels; nothing is read back from them.

``--sweep OUTPUT_DIR OVERRIDES`` (repeatable, instead of ``--output_dir``) runs several decodes of the same EBM
and hypotheses in one process, each with its own sampler options over the config's: stage 6's grid. Starting
Python, ESPnet and the model costs far more than a few Langevin steps over a small set, so a grid of one process
per setting spent most of its time starting up.
"""

import argparse
import contextlib
import io
import logging
import os
import time

import numpy as np
import torch
import yaml

from ebm.cli import EbmError, run, setup_logging
from ebm.io import read_scp, write_atomic
from ebm.langevin import CONFIG_KEYS, config_number, langevin_from_config, output_problem


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_file", default=None, help="the EBM's .pth (default with --settings: the one it names)")
    p.add_argument("--train_config", default=None, help="the EBM's config.yaml (default with --settings: its own)")
    p.add_argument("--config", default=None, help="YAML: LangevinSampler options, batch_size, record_every")
    p.add_argument("--settings", default=None,
                   help="an earlier decode's settings.yaml: decode with its sampler options, batch size, EBM and "
                        "experts (instead of --config, the overrides and --expert)")
    p.add_argument("--text", required=True, help="Kaldi text")
    p.add_argument("--init_scp", required=True, help="initial hypotheses: denormalised feats.scp (npy)")
    p.add_argument("--key_file", default=None)
    p.add_argument("--output_dir", default=None, help="where the decode goes (or --sweep)")
    p.add_argument("--sweep", nargs=2, action="append", default=[], metavar=("OUTPUT_DIR", "OVERRIDES"),
                   help="one decode of a grid into OUTPUT_DIR (repeatable): OVERRIDES are comma-separated "
                        "KEY=VALUE of " + ", ".join(OVERRIDES) + " over the config and the command line's, or '-' "
                        "for none")
    p.add_argument("--steps", type=OVERRIDE_TYPES["steps"], default=None, help="overrides the config's steps (sweeps)")
    p.add_argument("--step_size", type=OVERRIDE_TYPES["step_size"], default=None,
                   help="overrides the config's step_size")
    p.add_argument("--sigma", type=OVERRIDE_TYPES["sigma"], default=None, help="overrides the config's sigma")
    p.add_argument("--drift_min_bin", type=OVERRIDE_TYPES["drift_min_bin"], default=None,
                   help="overrides the config's drift_min_bin")
    p.add_argument("--noise_level_max", type=OVERRIDE_TYPES["noise_level_max"], default=None,
                   help="overrides the config's noise_level_max (where an annealed chain starts)")
    p.add_argument("--init_name", default=None, help="what the initial hypotheses are (settings.yaml)")
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--weight", type=float, default=1.0, help="this EBM's weight in a product of experts")
    p.add_argument("--expert", nargs=3, action="append", default=[], metavar=("TRAIN_CONFIG", "MODEL_FILE", "WEIGHT"),
                   help="another EBM whose weighted energy is added (repeatable); same tokens and statistics")
    return p


#: The sampler options the command line and ``--sweep`` set over the decode config (stage 6's grid), with types.
OVERRIDE_TYPES = dict(steps=int, step_size=float, sigma=float, drift_min_bin=int, noise_level_max=float)
OVERRIDES = tuple(OVERRIDE_TYPES)


def sweep_overrides(text):
    """``KEY=VALUE,...`` of one ``--sweep`` item (or ``-``) -> {key: typed value}."""
    if text.strip() in ("", "-"):
        return {}
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in OVERRIDE_TYPES:
            raise EbmError(f"--sweep overrides '{text}': '{item}' is not KEY=VALUE with KEY one of "
                           f"{', '.join(OVERRIDES)}; write e.g. steps=3,step_size=2.0 (or '-' for none)")
        if key in out:
            raise EbmError(f"--sweep overrides '{text}' set {key} twice; give it once")
        try:
            out[key] = OVERRIDE_TYPES[key](value)
        except ValueError:
            raise EbmError(f"--sweep overrides '{text}': {key}={value} is not {OVERRIDE_TYPES[key].__name__}; "
                           "fix the value") from None
    return out


def _criterion(train_args):
    criteria = (getattr(train_args, "model_conf", None) or {}).get("criteria") or []
    names = [c.get("label") or c["name"] for c in criteria] if isinstance(criteria, list) else []
    return "+".join(names) or None


def load_experts(args, model, train_args, device):
    """The energy the chain runs on: this EBM's network, or the weighted sum with ``--expert`` ones."""
    if not args.expert and args.weight == 1.0:
        return model.energy_network, None
    from ebm.product_of_experts import ProductOfExperts, check_compatible
    from ebm.task import EBMTask

    networks, weights = [model.energy_network], [args.weight]
    described = [{"train_config": args.train_config, "model_file": args.model_file, "weight": args.weight,
                  "criterion": _criterion(train_args)}]
    for config, model_file, weight in args.expert:
        try:
            weight = float(weight)
        except ValueError:
            raise EbmError(f"--expert {config} {model_file} {weight}: the weight must be a number") from None
        try:
            other, other_args = EBMTask.build_model_from_file(config, model_file, device)
        except (OSError, RuntimeError, ValueError) as e:
            raise EbmError(f"cannot load the expert {model_file} ({config}): {e}") from None
        try:
            check_compatible(model, train_args, other, other_args, f"the expert {model_file}")
        except ValueError as e:
            raise EbmError(str(e)) from None
        networks.append(other.energy_network.eval())
        weights.append(weight)
        described.append({"train_config": config, "model_file": model_file, "weight": weight,
                          "criterion": _criterion(other_args)})
    try:
        return ProductOfExperts(networks, weights), described
    except ValueError as e:
        raise EbmError(str(e)) from None


def settings_options(args):
    """Fill ``args`` from ``--settings``: the options that made an earlier decode (its settings.yaml, as
    :func:`describe` wrote it). Returns the sampler's config dict (with ``batch_size``)."""
    keys = ("config",) + OVERRIDES
    given = [f"--{k}" for k in keys if getattr(args, k) is not None]
    given += ["--expert"] * bool(args.expert) + ["--weight"] * (args.weight != 1.0)
    if given:
        raise EbmError(f"--settings {args.settings} already holds the decode options; drop {' '.join(given)}")
    try:
        with open(args.settings) as f:
            settings = yaml.safe_load(f)
    except OSError as e:
        raise EbmError(f"cannot read {args.settings} ({e.strerror}); give the settings.yaml of a finished decode "
                       "(stage 6 writes one beside each decode directory's sets)") from None
    except yaml.YAMLError as e:
        raise EbmError(f"{args.settings} is not valid YAML ({e}); rerun the decode that wrote it") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("sampler"), dict):
        raise EbmError(f"{args.settings} has no 'sampler' mapping; it is not a settings.yaml of langevin_decode")
    for key in ("model_file", "train_config"):
        mine, theirs = getattr(args, key), settings.get(key)
        if mine is None:
            if theirs is None:
                raise EbmError(f"{args.settings} names no {key}; give --{key}")
            setattr(args, key, theirs)
        elif theirs is not None and os.path.normpath(mine) != os.path.normpath(theirs):
            raise EbmError(f"--{key} {mine} is not the {key} of {args.settings} ({theirs}); a decode 'like' "
                           f"another runs its model: drop --{key} or give the same file")
    experts = settings.get("experts") or []
    if experts:
        args.weight = float(experts[0]["weight"])
        args.expert = [(e["train_config"], e["model_file"], str(e["weight"])) for e in experts[1:]]
    if args.init_name is None:
        args.init_name = settings.get("init")
    conf = dict(settings["sampler"])
    if settings.get("batch_size") is not None:
        conf["batch_size"] = settings["batch_size"]
    return conf


def describe(sampler, train_args, energy, experts, args, batch_size):
    """What stage 7 needs to label this decode: sampler options, the EBM's criteria (each expert's, weighted, for a
    product of experts), its size."""
    criterion = _criterion(train_args)
    if experts:
        criterion = " + ".join(f"{e['weight']:g}*({e['criterion']})" for e in experts)
    out = {
        "sampler": {k: getattr(sampler, k) for k in CONFIG_KEYS},
        "batch_size": batch_size,
        "init": args.init_name,
        "init_scp": args.init_scp,
        "criterion": criterion,
        "model_file": args.model_file,
        "train_config": args.train_config,
        "params": int(sum(p.numel() for p in energy.parameters())),
    }
    if experts:
        out["experts"] = experts
    return out


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    if bool(args.output_dir) == bool(args.sweep):
        raise EbmError("give --output_dir (one decode) or --sweep OUTPUT_DIR OVERRIDES (several), not both "
                       "and not neither")
    if args.settings and any(sweep_overrides(o) for _, o in args.sweep):
        raise EbmError(f"--settings {args.settings} already holds the decode options; give '-' as the --sweep "
                       "overrides (a grid is given with --config and --sweep)")
    conf = {}
    if args.settings:
        conf = settings_options(args)
    elif args.model_file is None or args.train_config is None:
        raise EbmError("give --model_file and --train_config (or --settings of an earlier decode)")
    if args.config:
        with open(args.config) as f:
            conf = yaml.safe_load(f) or {}
        if not isinstance(conf, dict):
            raise EbmError(f"{args.config} is not a YAML mapping of Langevin options")
    try:
        batch_size = config_number("batch_size", conf.pop("batch_size", 8))
        record_every = config_number("record_every", conf.pop("record_every", 1))
    except ValueError as e:
        raise EbmError(f"{args.config}: {e}; fix the value") from None
    for key in OVERRIDES:
        if getattr(args, key) is not None:
            conf[key] = getattr(args, key)
    # every sampler is built (and so checked) before anything loads
    decodes = []
    for out, overrides in args.sweep or [(args.output_dir, "-")]:
        try:
            decodes.append((out, langevin_from_config({**conf, **sweep_overrides(overrides)})))
        except ValueError as e:  # a bad value in the decode config, on the command line or in a sweep item
            raise EbmError(f"{e} (decode config {args.settings or args.config or '-'}, the command line's "
                           f"{'/'.join('--' + k for k in OVERRIDES)} and --sweep {out} {overrides}); "
                           "fix the value") from None

    with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
        from espnet2.fileio.npy_scp import NpyScpReader

        from ebm.task import EBMTask
    device = "cuda" if args.ngpu > 0 else "cpu"
    model, train_args = EBMTask.build_model_from_file(args.train_config, args.model_file, device)
    model.eval()
    energy, experts = load_experts(args, model, train_args, device)
    for _, sampler in decodes:
        try:
            sampler.check_network(energy)
        except ValueError as e:
            raise EbmError(f"{e} (model {args.train_config}, decode config "
                           f"{args.config or args.settings or '(none)'}; an annealed one: "
                           "conf/decode_ebm_annealed.yaml)") from None
    preprocess = EBMTask.build_preprocess_fn(train_args, False)
    texts = dict(read_scp(args.text))
    inits = NpyScpReader(args.init_scp)
    keys = [k for k, _ in read_scp(args.key_file, allow_empty_value=True)] if args.key_file else list(texts)
    missing = [k for k in keys if k not in inits.keys() or k not in texts]
    if missing:
        raise EbmError(f"{len(missing)} utterances have no hypothesis in {args.init_scp} or no text in "
                       f"{args.text}, e.g. {missing[:3]}; rerun stage 4 for this set")
    keys.sort(key=lambda k: len(inits[k]), reverse=True)
    batches = []  # read once, refined by every decode
    for start in range(0, len(keys), batch_size):
        batch = keys[start:start + batch_size]
        tokens = [torch.as_tensor(preprocess(k, {"text": texts[k]})["text"]) for k in batch]
        feats = [torch.as_tensor(np.asarray(inits[k], dtype=np.float32)) for k in batch]
        batches.append((batch, tokens, feats))
    for out, sampler in decodes:
        refine(out, sampler, model, energy, batches, len(keys), record_every, device, args)
        settings = describe(sampler, train_args, energy, experts, args, batch_size)
        write_atomic(f"{out}/settings.yaml", yaml.safe_dump(settings))


def refine(out, sampler, model, energy, batches, num_keys, record_every, device, args):
    """One decode of every batch into ``out`` (ESPnet's decode layout, plus energy, stopped and rtf)."""
    from espnet2.fileio.npy_scp import NpyScpWriter

    os.makedirs(out, exist_ok=True)
    energy_lines, stop_lines, rtf_lines = [], [], []
    # the feats.scp are written under a temporary name and renamed once every utterance passed its check
    scps = {sub: (f"{out}/{sub}/feats.scp.tmp", f"{out}/{sub}/feats.scp") for sub in ("norm", "denorm")}
    for tmp, final in scps.values():
        for path in (tmp, final):
            if os.path.exists(path):
                os.remove(path)
    done = 0
    with NpyScpWriter(f"{out}/norm", scps["norm"][0]) as norm_w, \
            NpyScpWriter(f"{out}/denorm", scps["denorm"][0]) as denorm_w:
        for batch, tokens, feats in batches:
            tl = torch.tensor([len(t) for t in tokens])
            fl = torch.tensor([len(f) for f in feats])
            text = torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True).to(device)
            y = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(device)
            t0 = time.perf_counter()
            out_batch = model.inference(text, tl.to(device), y, fl.to(device), sampler, energy, record_every)
            seconds = time.perf_counter() - t0
            res, denorm = out_batch["result"], out_batch["feat_gen_denorm"]
            done += len(batch)
            logging.info(f"{done}/{num_keys} utterances refined ({sampler.steps} steps, {seconds:.1f} s for this "
                         "batch)")
            for i, k in enumerate(batch):
                n = int(fl[i])
                problem = output_problem(res.feats[i, :n])
                if problem is not None:
                    raise EbmError(
                        f"utterance {k}: the Langevin chain's output is not written: {problem}. Set max_abs (e.g. "
                        f"10) in the decode config {args.config or '(none)'} so that a chain leaving the normalised "
                        "range stops at its last sane state, or lower step_size")
                norm_w[k] = res.feats[i, :n].cpu().numpy()
                denorm_w[k] = denorm[i, :n].cpu().numpy()
                energy_lines.append(f"{k} " + " ".join(f"{e:.5g}" for e in res.energies[i].tolist()) + "\n")
                if res.stopped[i]:
                    stop_lines.append(f"{k} step={int(res.stop_step[i])} reason={res.reasons[i]}\n")
                rtf_lines.append(f"{k} {seconds * n / int(fl.sum()):.4f} {n}\n")
    for tmp, final in scps.values():
        os.replace(tmp, final)
    for name, lines in [("energy", energy_lines), ("stopped", stop_lines), ("rtf", rtf_lines)]:
        write_atomic(f"{out}/{name}", "".join(sorted(lines)))
    e = np.array([[float(v) for v in line.split()[1:]] for line in energy_lines])
    logging.info(f"{num_keys} utterances, {sampler.steps} steps: mean energy {e[:, 0].mean():.4g} -> "
                 f"{e[:, -1].mean():.4g}; {len(stop_lines)} chains stopped early -> {out}")


if __name__ == "__main__":
    run(main)
