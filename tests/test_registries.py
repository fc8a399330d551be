"""Contracts of the pluggable parts: abstract bases, type-checked registries, the combined criterion's one calling
convention, renamed config keys, and DTW for training without the metrics module."""

import glob
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from espnet2.train.class_choices import ClassChoices

from ebm.alignment import dtw_path, dtw_paths
from ebm.cli import EbmError
from ebm.criteria import (CRITERIA, AbsEnergyCriterion, AbsScoreCriterion, BinaryNCE, CombinedCriterion, DeltaScore,
                          DenoisingScoreMatching, energy_criterion_choices, score_criterion_choices)
from ebm.energy_network import EnergyNetwork
from ebm.espnet_model import ESPnetEBMModel
from ebm.langevin import langevin_from_config
from ebm.negative_samplers import (RENAMED_KEYS, SAMPLERS, AbsNegativeSampler, LangevinSamples, MixedSampler,
                                   TeacherForced, build_sampler, sampler_choices)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "egs", "*", "tts1", "conf", "tuning", "train_ebm*.yaml"))
                       + glob.glob(os.path.join(ROOT, "tests", "data", "*ebm*.yaml")))


# --- abstract bases and registries -------------------------------------------------------------------------------

REGISTRIES = [(sampler_choices, AbsNegativeSampler), (energy_criterion_choices, AbsEnergyCriterion),
              (score_criterion_choices, AbsScoreCriterion)]


@pytest.mark.parametrize("choices,base", REGISTRIES)
def test_registries_are_type_checked_against_their_abstract_base(choices, base):
    assert choices.base_type is base and choices.classes
    assert all(issubclass(c, base) and not getattr(c, "__abstractmethods__", None) for c in choices.classes.values())
    with pytest.raises(TypeError, match="abstract"):
        base()
    # ESPnet's ClassChoices refuses a class that is not a subclass of the base, as registering it here would
    with pytest.raises(ValueError, match=base.__name__):
        ClassChoices(choices.name, classes={**choices.classes, "stranger": torch.nn.Identity}, type_check=base)


def test_the_two_criterion_kinds_do_not_mix():
    with pytest.raises(ValueError, match="AbsEnergyCriterion"):
        ClassChoices("energy_criterion", classes=dict(delta=DeltaScore), type_check=AbsEnergyCriterion)
    with pytest.raises(ValueError, match="AbsScoreCriterion"):
        ClassChoices("score_criterion", classes=dict(binary_nce=BinaryNCE), type_check=AbsScoreCriterion)
    assert set(CRITERIA) == set(energy_criterion_choices.classes) | set(score_criterion_choices.classes)


def test_incomplete_subclasses_cannot_be_built():
    class NoForward(AbsNegativeSampler):
        pass

    class NoHypothesis(AbsScoreCriterion):
        def forward(self, hyp, ref, lengths, grad, sigma=None):
            return grad.sum(), {}

    for cls in (NoForward, NoHypothesis):
        with pytest.raises(TypeError, match="abstract"):
            cls()


def test_mixed_is_a_container_not_a_sampler():
    assert "mixed" in SAMPLERS and "mixed" not in sampler_choices.classes
    assert not isinstance(MixedSampler([{"name": "random_masking"}]), AbsNegativeSampler)
    with pytest.raises(ValueError, match="unknown sampler 'mixed'"):
        MixedSampler([{"name": "mixed", "conf": {"samplers": [{"name": "random_masking"}]}}])
    with pytest.raises(ValueError, match="unknown sampler 'mixed'"):
        DeltaScore(hypothesis={"name": "mixed", "conf": {"samplers": [{"name": "random_masking"}]}})
    assert isinstance(DeltaScore(hypothesis="teacher_forced").hypothesis, TeacherForced)
    with pytest.raises(ValueError, match="hypothesis must be"):
        DeltaScore(hypothesis=torch.nn.Identity())


# --- the combined criterion's one calling convention -------------------------------------------------------------

def _batch():
    torch.manual_seed(0)
    lengths = torch.tensor([6, 4])
    ref = torch.randn(2, 6, 5) * (torch.arange(6)[None] < lengths[:, None]).unsqueeze(-1)
    return ref, lengths


def test_combined_takes_keywords_only_and_no_second_convention():
    ref, lengths = _batch()
    comb = CombinedCriterion([{"name": "delta", "conf": {"hypothesis": "teacher_forced"}}])
    streams = {"tf_feats": ref * 0.5, "tf_feats_lengths": lengths}
    loss, stats = comb(ref=ref, lengths=lengths, score_fn=lambda y, l: -(ref - y), streams=streams)
    assert float(loss) == 0.0 and stats["loss"] == 0.0 and "delta_score_cos" in stats
    with pytest.raises(TypeError):
        comb(ref, lengths)  # positional: refused
    with pytest.raises(TypeError, match="hyp"):
        comb(ref=ref, lengths=lengths, hyp=ref, grad=torch.zeros_like(ref))  # the old second convention
    with pytest.raises(ValueError, match="score_fn"):
        comb(ref=ref, lengths=lengths, streams=streams)
    with pytest.raises(ValueError, match="hypothesis"):  # a delta member must be able to draw its hypotheses
        CombinedCriterion([{"name": "delta"}])(ref=ref, lengths=lengths, score_fn=lambda y, l: y)
    with pytest.raises(ValueError, match="combined"):
        CombinedCriterion([{"name": "combined", "conf": {"criteria": [{"name": "binary_nce"}]}}])


def test_loss_on_own_hypothesis_is_draw_then_score_with_the_draws_sigma():
    ref, lengths = _batch()
    crit = DenoisingScoreMatching(0.2, 0.8, target="score")

    def score_fn(y, l):
        return torch.ones_like(y)

    torch.manual_seed(3)
    loss, _ = crit.loss_on_own_hypothesis(ref, lengths, score_fn)
    torch.manual_seed(3)
    hyp, hl, extra = crit.make_hypothesis(ref, lengths)
    expect, _ = crit(hyp=hyp, ref=ref, lengths=hl, grad=score_fn(hyp, hl), sigma=extra["sigma"])
    assert float(loss) == float(expect)
    with pytest.raises(ValueError, match="sigma"):  # the score target cannot be computed without the draw's sigma
        crit(hyp=hyp, ref=ref, lengths=hl, grad=score_fn(hyp, hl))


# --- renamed keys ------------------------------------------------------------------------------------------------

def test_old_langevin_keys_are_translated_with_a_warning_naming_the_new_key(caplog):
    with caplog.at_level(logging.WARNING):
        old = build_sampler("langevin", noise_scale=0.0, grad_clip=0.5, steps=2)
    new = build_sampler("langevin", sigma=0.0, grad_clamp=0.5, steps=2)
    assert isinstance(old, LangevinSamples)
    assert (old.sigma, old.grad_clamp, old.steps) == (new.sigma, new.grad_clamp, new.steps) == (0.0, 0.5, 2)
    text = caplog.text
    assert "'noise_scale' is now 'sigma'" in text and "'grad_clip' is now 'grad_clamp'" in text
    with pytest.raises(ValueError, match="keep only 'sigma'"):
        build_sampler("langevin", noise_scale=0.0, sigma=1.0)
    with pytest.raises(TypeError):  # the class itself only knows the new names
        LangevinSamples(noise_scale=0.0)


def test_a_model_from_an_old_config_builds_the_same_modules(caplog):
    """A trained experiment's config.yaml with the old keys still builds (and so still loads its checkpoint)."""
    old_own = {"name": "langevin", "conf": {"init": "teacher_forced", "steps": 1, "noise_scale": 0.0,
                                            "grad_clip": 1.0}}
    new_own = {"name": "langevin", "conf": {"init": "teacher_forced", "steps": 1, "sigma": 0.0, "grad_clamp": 1.0}}
    models = []
    for own in (old_own, new_own):
        with caplog.at_level(logging.WARNING):
            models.append(ESPnetEBMModel(
                None, None, torch.nn.Linear(2, 2),
                samplers=[{"name": "langevin", "conf": own["conf"]}],
                criteria=[{"name": "binary_nce"}, {"name": "delta", "conf": {"hypothesis": own}}]))
    assert "is now 'sigma'" in caplog.text
    old, new = models
    assert list(old.state_dict()) == list(new.state_dict())
    assert [n for n, _ in old.named_modules()] == [n for n, _ in new.named_modules()]
    for m_old, m_new in ((old.sampler.members["langevin"], new.sampler.members["langevin"]),
                         (old.criterion.members["delta"].hypothesis, new.criterion.members["delta"].hypothesis)):
        assert (m_old.sigma, m_old.grad_clamp) == (m_new.sigma, m_new.grad_clamp) == (0.0, 1.0)


def _sampler_specs(model_conf):
    specs = list(model_conf.get("samplers") or [])
    for crit in model_conf.get("criteria") or []:
        hyp = (crit.get("conf") or {}).get("hypothesis")
        if isinstance(hyp, dict):
            specs.append(hyp)
    return specs


@pytest.mark.parametrize("config", TRAIN_CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_configs_use_only_the_new_keys_and_build(config, caplog):
    with open(config, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    model_conf = conf["model_conf"]
    for spec in _sampler_specs(model_conf):
        stale = set(RENAMED_KEYS.get(spec["name"], {})) & set(spec.get("conf") or {})
        assert not stale, f"{config}: sampler {spec['name']} still uses {sorted(stale)}"
    with caplog.at_level(logging.WARNING):
        ESPnetEBMModel(None, None, EnergyNetwork(**conf.get("energy_network_conf", {})), **model_conf)
    assert "is now" not in caplog.text


# --- DTW for training --------------------------------------------------------------------------------------------

def _reference_dtw(a, b):
    """The textbook double loop (first of diagonal, horizontal, vertical on ties), as librosa's accumulation."""
    a, b = np.asarray(a, float).reshape(len(a), -1), np.asarray(b, float).reshape(len(b), -1)
    n, m = len(a), len(b)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[1, 1] = np.sqrt(((a[0] - b[0]) ** 2).sum())
    back = np.zeros((n, m), dtype=int)
    for i in range(n):
        for j in range(m):
            if i == j == 0:
                continue
            c = np.sqrt(((a[i] - b[j]) ** 2).sum())
            cands = [acc[i, j] + c, acc[i + 1, j] + c, acc[i, j + 1] + c]
            back[i, j] = int(np.argmin(cands))
            acc[i + 1, j + 1] = cands[back[i, j]]
    path, (i, j) = [(n - 1, m - 1)], (n - 1, m - 1)
    while (i, j) != (0, 0):
        i, j = {0: (i - 1, j - 1), 1: (i, j - 1), 2: (i - 1, j)}[back[i, j]]
        path.append((i, j))
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


def test_dtw_path_is_exact_dtw_with_librosas_tie_breaking():
    rng = np.random.default_rng(0)
    pairs = []
    for t in range(30):
        n, m = (int(x) for x in rng.integers(1, 14, 2))
        if t % 3 == 0:  # small integers: many equal path costs, so the tie rule decides
            pairs.append((rng.integers(0, 3, (n, 2)).astype(float), rng.integers(0, 3, (m, 2)).astype(float)))
        elif t % 3 == 1:
            pairs.append((rng.normal(size=n), rng.normal(size=m)))  # 1-D: one value per frame
        else:
            pairs.append((rng.normal(size=(n, 3)), rng.normal(size=(m, 3))))
    pairs.append((np.zeros((4, 2)), np.zeros((7, 2))))  # every path ties
    batched = dtw_paths(pairs)
    for (a, b), (i, j) in zip(pairs, batched):
        ri, rj = _reference_dtw(a, b)
        assert np.array_equal(i, ri) and np.array_equal(j, rj)
        si, sj = dtw_path(a, b)
        assert np.array_equal(i, si) and np.array_equal(j, sj)
    import librosa  # the metrics' DTW so far: paths, hence MCD, stay the same

    for a, b in pairs[:12]:
        a2, b2 = np.asarray(a, float).reshape(len(a), -1), np.asarray(b, float).reshape(len(b), -1)
        wp = librosa.sequence.dtw(X=a2.T, Y=b2.T, metric="euclidean")[1][::-1]
        i, j = dtw_path(a, b)
        assert np.array_equal(i, wp[:, 0]) and np.array_equal(j, wp[:, 1])


def test_dtw_refuses_bad_input():
    with pytest.raises(EbmError, match="frames on both sides"):
        dtw_path(np.zeros((0, 2)), np.zeros((3, 2)))
    with pytest.raises(EbmError, match="feature sizes"):
        dtw_path(np.zeros((2, 2)), np.zeros((3, 4)))
    with pytest.raises(EbmError, match="not finite"):
        dtw_path(np.array([0.0, np.nan]), np.zeros(3))


def test_training_path_imports_neither_metrics_nor_librosa():
    """Aligned delta training and the free-running refinement gain run without ebm.metrics (or librosa)."""
    code = (
        "import sys, torch\n"
        "from ebm.criteria import CombinedCriterion\n"
        "ref, lengths = torch.randn(2, 6, 3), torch.tensor([6, 4])\n"
        "streams = {'fr_feats': torch.randn(2, 9, 3), 'fr_feats_lengths': torch.tensor([9, 5])}\n"
        "c = CombinedCriterion([{'name': 'delta', 'conf': {'hypothesis': 'free_running', 'align': 'dtw'}}])\n"
        "c(ref=ref, lengths=lengths, score_fn=lambda y, l: torch.zeros_like(y), streams=streams)\n"
        "bad = [m for m in ('ebm.metrics', 'librosa') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import ebm.espnet_model\n"
        "assert 'ebm.metrics' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


DECODE_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "egs", "*", "tts1", "conf", "decode_ebm*.yaml")))


@pytest.mark.parametrize("config", DECODE_CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_decode_configs_build_a_sampler(config):
    with open(config, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    conf.pop("batch_size", None)
    conf.pop("record_every", None)
    sampler = langevin_from_config(conf)
    assert sampler.steps == conf["steps"]
