"""The stage-cost projection of ebm.bin.benchmark_stages, on made-up unit costs (the measuring is not tested here:
it times real models and would make the suite slow)."""

import pytest

from ebm.bin.benchmark_stages import CORPORA, project, utterances_per_update

UNITS = {"stage 7 mel extraction": 0.04, "stage 7 Griffin-Lim (32 iterations)": 0.1,
         "stage 7 analysis (mel-cepstra, WORLD harvest)": 0.3, "stage 7 MCD and F0 errors (DTW)": 0.005,
         "stage 7 mel distance (DTW)": 0.002, "stage 7 predicted MOS (DistillMOS)": 0.13,
         "x Tacotron 2 update": 0.05, "x EBM update": 0.05, "x Langevin step": 0.02}


def test_batch_bins_hold_fewer_long_utterances():
    assert utterances_per_update(dict(batch_size=16), 6.6) == 16
    config = dict(batch_type="numel", batch_bins=3_000_000)
    assert utterances_per_update(config, 6.6) == int(3_000_000 // (6.6 * 22050 / 256 * 80))  # 66
    assert utterances_per_update(config, 2.0) > utterances_per_update(config, 6.6) >= 1


def test_projection_counts_what_the_recipe_asks():
    spec = dict(CORPORA["mini_espeak"], train=100, dev=10, eval=20, samples=2, settings=[1, 2, 3])
    out = project("x", spec, UNITS, 2.0, (0.01, 0.02, "bench"), jobs=2, t2_epochs=7)
    assert out["3"][0] == pytest.approx(0.05 * 100 * 2.0 * 7) and "7 epochs" in out["3"][1]
    # 3 free-running + 1 teacher-forced per text, and the model two thirds of the way free-running on dev (the
    # convergence check)
    assert out["4"][0] == pytest.approx((130 * 2.0 * (3 * 0.01 + 0.02) + 10 * 2.0 * 0.01) / 2)
    assert out["6"][0] == pytest.approx(0.02 * 6 * 30 * 2.0 / 2)  # 1 + 2 + 3 steps on dev and eval
    per_system = 0.1 + 0.3 + 0.005 + 0.002 + 0.13
    ref = 0.3 + 0.04
    dev, ev = (9 * per_system + ref) * 10, (4 * per_system + ref) * 20  # eval: only the dev choices
    assert out["7"][0] == pytest.approx((dev + ev) * 2.0 / 2)
    starts = {"start of a Langevin decoding job": 5.0, "start of a vocoding job": 2.0, "start of a scoring job": 3.0}
    with_starts = project("x", spec, {**UNITS, **starts}, 2.0, None, jobs=2)
    assert with_starts["6"][0] == pytest.approx(out["6"][0] + 2 * 5.0)  # a job per set for the whole grid
    assert with_starts["7"][0] == pytest.approx(out["7"][0] + 2 * (2.0 + 3.0))  # a vocoding and a scoring call per set
    assert "9 systems x 10 dev and 4 x 20 eval" in out["7"][1]


def test_an_imported_baseline_costs_no_training():
    out = project("x", dict(CORPORA["ljspeech"], settings=[1]), UNITS, 6.6, None, jobs=2)
    assert out["3"][0] == 0 and "4" not in out  # no decoding benchmark given: no stage 4 row
    assert "6 systems x" in out["7"][1]  # nor a kept model to check: 2 + 3 controls + 1 setting
