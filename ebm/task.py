"""The EBM task: how ESPnet's trainer builds, feeds and saves the energy-based model.

It reuses the TTS task's text front end (token list, cleaner, g2p, ESPnet's CommonPreprocessor and collate),
feature extractor and normaliser, so the EBM reads the same tokens and the same normalised mel as the Tacotron 2
baseline. What it adds: the energy network choice, the model options (negative samplers, criteria, refinement
gain) and two optional data streams from stage 4, ``tf_feats`` and ``fr_feats`` (``npy`` type feats.scp).

The pluggable parts inside ``model_conf`` are registered as ESPnet registers its own, in type-checked
``ClassChoices``: negative samplers in :data:`ebm.negative_samplers.sampler_choices` (base class
``AbsNegativeSampler``), criteria in :data:`ebm.criteria.energy_criterion_choices` (``AbsEnergyCriterion``) and
:data:`ebm.criteria.score_criterion_choices` (``AbsScoreCriterion``). They are not in ``class_choices_list``: the
model takes lists of them (``samplers``, ``criteria``), not one ``--<name>`` option each.

Import this module before ESPnet parses a config or rebuilds a model (the entry points do): nothing is
registered in ESPnet's own tables, so every process that imports it, DDP workers included, sees the same task.
"""

import argparse
import logging
from typing import Tuple

from espnet2.tasks.tts import TTSTask, feats_extractor_choices, normalize_choices
from espnet2.train.class_choices import ClassChoices
from espnet2.utils.get_default_kwargs import get_default_kwargs

from ebm.energy_network import EnergyNetwork
from ebm.espnet_model import ESPnetEBMModel

energy_network_choices = ClassChoices(
    "energy_network",
    classes=dict(transformer=EnergyNetwork),
    default="transformer",
)


class EBMTask(TTSTask):
    class_choices_list = [feats_extractor_choices, normalize_choices, energy_network_choices]

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        # TTSTask's --model_conf describes its own model; ours takes the EBM's options.
        parser.set_defaults(model_conf=get_default_kwargs(ESPnetEBMModel))
        # Read by the recipe's stage 5 (which builds the training list), not by the trainer; it lives here so that
        # the EBM's config shows every knob of its training.
        parser.add_argument("--train_hyps", type=int, default=0,
                            help="stage 4's free-running samples per training text added as hypotheses "
                                 "(ebm.bin.expand_hypotheses); 0: the seed-0 decode only")

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("text", "speech")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("tf_feats", "fr_feats")

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetEBMModel:
        if isinstance(args.token_list, str):
            with open(args.token_list, encoding="utf-8") as f:
                token_list = [line.rstrip("\n") for line in f]
            args.token_list = list(token_list)  # saved in config.yaml: the model is portable
        else:
            token_list = list(args.token_list)
        vocab_size = len(token_list)

        feats_extract = feats_extractor_choices.get_class(args.feats_extract)(**args.feats_extract_conf)
        odim = feats_extract.output_size()
        normalize = None
        if args.normalize is not None:
            normalize = normalize_choices.get_class(args.normalize)(**args.normalize_conf)
        net_class = energy_network_choices.get_class(args.energy_network)
        conf = {k: v for k, v in args.energy_network_conf.items() if k not in ("vocab_size", "odim")}
        energy_network = net_class(vocab_size=vocab_size, odim=odim, **conf)
        model = ESPnetEBMModel(feats_extract, normalize, energy_network, **args.model_conf)
        n = sum(p.numel() for p in energy_network.parameters())
        logging.info(f"energy network: {n} parameters ({n / 1e6:.2f}M), vocabulary {vocab_size}, mel {odim}")
        return model
