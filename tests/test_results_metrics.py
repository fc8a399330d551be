"""Stage 7's measures that a vocoder cannot game (predicted MOS, mel distance, silence share of MCD), their scoring
entry point, and the verdict and tables of make_results built on them, on inputs whose answers are known."""

import json
import math
import shutil
import zlib

import numpy as np
import pytest
import soundfile as sf
import yaml

from ebm import metrics
from ebm.cli import EbmError
from ebm.scoring import read_scores

FS = 22050


def tone_then_quiet(seconds=0.3, quiet=1e-4, seed=0):
    """A harmonic tone, then as long a stretch of faint noise (more than 40 dB down: silent for the metrics)."""
    n = int(seconds * FS)
    t = np.arange(n) / FS
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    tone = 0.5 * tone / np.max(np.abs(tone))
    return np.concatenate([tone, quiet * np.random.default_rng(seed).standard_normal(n)])


@pytest.fixture(scope="module")
def speech():
    """A sentence of eSpeak NG speech (offline), the kind of signal DistillMOS was trained to judge."""
    from ebm.data.espeak_corpus import ESPEAK_FS, synthesize

    wav = synthesize(["The quick brown fox jumps over the lazy dog near the river bank."])[0]
    return wav.astype(np.float64) / 32768.0, ESPEAK_FS


# ------------------------------------------------------------------------------------------------ mel distance
def test_mel_distance_is_zero_for_identical_mels_and_grows_with_offset_and_noise():
    rng = np.random.default_rng(0)
    mel = np.cumsum(rng.standard_normal((60, 80)), axis=0) * 0.05 - 2.0  # a smooth log10 mel
    assert metrics.mel_distance(mel, mel.copy()) == 0.0
    # a 0.1 offset of log10 amplitude is 2 dB in every bin and frame
    assert metrics.mel_distance(mel, mel + 0.1) == pytest.approx(2.0, abs=1e-9)
    assert metrics.mel_distance(mel, mel + 0.2) == pytest.approx(4.0, abs=1e-9)
    # a slower rendition (every frame twice) is absorbed by DTW; noise is not
    assert metrics.mel_distance(mel, np.repeat(mel, 2, axis=0)) == 0.0
    small = metrics.mel_distance(mel, mel + 0.05 * rng.standard_normal(mel.shape))
    large = metrics.mel_distance(mel, mel + 0.2 * rng.standard_normal(mel.shape))
    assert 0.0 < small < large
    with pytest.raises(EbmError, match="non-finite"):
        metrics.mel_distance(mel, np.full_like(mel, np.nan))
    with pytest.raises(EbmError, match="generated mel has shape"):
        metrics.mel_distance(mel, np.zeros((0, 80)))


# ------------------------------------------------------------------------------------------------ silence share
def test_silent_frames_follow_the_reference_energy():
    x = tone_then_quiet()
    silent = metrics.silent_frames(x, FS)
    n = len(silent)
    assert not silent[: n // 2 - 4].any() and silent[n // 2 + 4:].all()
    assert metrics.silent_frames(np.zeros(4096), FS).all()  # digital silence throughout


def test_silence_share_of_mcd_on_a_constructed_case():
    ref = tone_then_quiet()
    half = len(ref) // 2
    noise = 0.05 * np.random.default_rng(1).standard_normal(half)
    in_pause, in_tone = ref.copy(), ref.copy()
    in_pause[half:] += noise
    in_tone[:half] += noise
    r = metrics.analyse(ref, FS)
    share = {name: metrics.score_analyses(r, metrics.analyse(gen, FS))["mcd_silence_share"]
             for name, gen in (("same", ref.copy()), ("pause", in_pause), ("tone", in_tone))}
    assert share["same"] == 0.0  # no distortion anywhere, none from silence
    assert share["pause"] > 0.9  # the whole error sits where the reference is silent
    assert share["tone"] < 0.3
    # the public function agrees with the scoring path
    assert metrics.mcd_silence_share(r["mcep"], r["silent"], metrics.analyse(in_pause, FS)["mcep"]) == pytest.approx(
        share["pause"])


# ------------------------------------------------------------------------------------------------ predicted MOS
def test_predicted_mos_prefers_clean_speech_to_speech_in_loud_noise(speech):
    wav, fs = speech
    noisy = wav + 0.3 * np.max(np.abs(wav)) * np.random.default_rng(0).standard_normal(len(wav))
    noisy /= np.max(np.abs(noisy))
    clean_mos, noisy_mos = metrics.predicted_mos(wav, fs), metrics.predicted_mos(noisy, fs)
    assert 1.0 <= noisy_mos < clean_mos - 0.3 and clean_mos <= 5.0
    assert metrics.predicted_mos(wav, fs) == clean_mos  # deterministic
    assert metrics._mos_model() is metrics._mos_model()  # loaded once per process
    assert metrics.predicted_mos(0.5 * wav, fs) == pytest.approx(clean_mos, abs=1e-3)  # the level does not matter


# ------------------------------------------------------------------------------------------------ score_wavs
def test_score_wavs_writes_the_new_columns(tmp_path):
    from ebm.bin import score_wavs
    from ebm.vocoder import FeatureSettings

    ref = tone_then_quiet()
    noisy = ref + 0.02 * np.random.default_rng(2).standard_normal(len(ref))
    files = {"ref": ref, "same": ref, "noisy": noisy}
    for name, sig in files.items():
        sf.write(str(tmp_path / f"{name}.wav"), sig, FS, subtype="PCM_16")
        (tmp_path / f"{name}.scp").write_text(f"u1 {tmp_path / f'{name}.wav'}\n")
    mel = FeatureSettings().logmel(sf.read(str(tmp_path / "ref.wav"), dtype="float32")[0])  # as stored: int16
    for name, m in (("same", mel), ("offset", mel + 0.1)):
        np.save(tmp_path / f"{name}.npy", m)
        (tmp_path / f"{name}_mel.scp").write_text(f"u1 {tmp_path / f'{name}.npy'}\n")
    out = {k: str(tmp_path / f"{k}.tsv") for k in ("as", "same", "noisy", "nomel")}
    score_wavs.main(["--ref_wav_scp", str(tmp_path / "ref.scp"),
                     "--system", str(tmp_path / "same.scp"), out["as"], "reference",
                     "--system", str(tmp_path / "same.scp"), out["same"], str(tmp_path / "same_mel.scp"),
                     "--system", str(tmp_path / "noisy.scp"), out["noisy"], str(tmp_path / "offset_mel.scp"),
                     "--system", str(tmp_path / "noisy.scp"), out["nomel"]])
    assert open(out["same"]).readline().rstrip("\n").split("\t") == ["utt", *score_wavs.COLUMNS]
    s = {k: read_scores(v)["u1"] for k, v in out.items()}
    assert s["as"]["mel_distance"] == 0.0 and s["same"]["mel_distance"] == pytest.approx(0.0, abs=1e-5)
    assert s["noisy"]["mel_distance"] == pytest.approx(2.0, abs=1e-4)
    assert math.isnan(s["nomel"]["mel_distance"])
    assert s["same"]["mcd"] == 0.0 and s["same"]["mcd_silence_share"] == 0.0
    assert s["noisy"]["mcd_silence_share"] > 0.5  # the added noise hurts the pause most
    assert 1.0 <= s["noisy"]["predicted_mos"] <= 5.0 and s["same"]["predicted_mos"] == s["as"]["predicted_mos"]
    (tmp_path / "short_mel.scp").write_text(f"u2 {tmp_path / 'same.npy'}\n")
    with pytest.raises(EbmError, match=r"1 utterances lack a mel in .*short_mel\.scp"):
        score_wavs.main(["--ref_wav_scp", str(tmp_path / "ref.scp"),
                         "--system", str(tmp_path / "same.scp"), out["same"], str(tmp_path / "short_mel.scp")])
    with pytest.raises(EbmError, match="WAV_SCP OUTPUT"):
        score_wavs.main(["--ref_wav_scp", str(tmp_path / "ref.scp"), "--system", str(tmp_path / "same.scp")])


# ------------------------------------------------------------------------------------------------ make_results
UTTS = [f"u{i}" for i in range(8)]


def write_scores(path, **means):
    """A scores table whose per-utterance values scatter a little around the given means (0.5% noise)."""
    from ebm.scoring import COLUMNS, f0_tracks_path, write_f0_tracks

    defaults = dict(mcd=10.0, log_f0_rmse=0.1, vde=0.1, gpe=0.1, ffe=0.2, mel_distance=8.0, mcd_silence_share=0.3,
                    predicted_mos=3.0)
    vals = {**defaults, **means}
    rng = np.random.default_rng(zlib.crc32(str(path.relative_to(path.parents[4])).encode()))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["utt\t" + "\t".join(COLUMNS)]
    for u in UTTS:
        lines.append(u + "\t" + "\t".join(f"{vals[c] * (1 + 0.005 * rng.standard_normal()):.5f}" for c in COLUMNS))
    path.write_text("\n".join(lines) + "\n")
    # and the F0 tracks scoring writes beside it: the reference voiced on 8 of 10 frames, the system near it
    ref_f0 = np.array([0.0] + [120.0] * 8 + [0.0])
    write_f0_tracks(f0_tracks_path(str(path)),
                    [(u, ref_f0, ref_f0 * (1 + 0.05 * rng.standard_normal(10))) for u in UTTS])


def results_tree(root, ebm=None, control=None, base=None, gt=None):
    """Scores for analysis-synthesis, Tacotron 2, one EBM setting and one control, on dev and eval."""
    dirs = {"gt": root / "exp/analysis_synthesis", "base": root / "exp/tts/decode_free_running",
            "ebm": root / "exp/ebm_x/decode_langevin_steps2_from_free_running",
            "ctl": root / "exp/tts/decode_free_running_gv1.5"}
    values = {"gt": gt or dict(mcd=6.0, mel_distance=0.0, predicted_mos=3.5), "base": base or {},
              "ebm": ebm or {}, "ctl": control or {}}
    for name, d in dirs.items():
        for dset in ("dev", "eval1"):
            write_scores(d / dset / "scores_griffin_lim.tsv", **values[name])
    (dirs["ebm"] / "settings.yaml").write_text(yaml.safe_dump(
        {"criterion": "score", "init": "free_running", "sampler": {"steps": 2, "step_size": 0.1, "sigma": 0.0}}))
    return dirs


def make_results(root, dirs, control=True):
    from ebm.bin import make_results as mr

    argv = ["--dev_set", "dev", "--eval_set", "eval1", "--vocoder_tag", "griffin_lim",
            "--ground_truth", str(dirs["gt"]), "--baseline", str(dirs["base"]), "--ebm", str(dirs["ebm"]),
            "--output_md", str(root / "RESULTS.md"), "--output_json", str(root / "RESULTS.json"),
            "--plot_dir", str(root / "plots")]
    mr.main(argv + (["--control", str(dirs["ctl"])] if control else []))
    # strict JSON: an undefined measure is null, never NaN
    records = json.loads((root / "RESULTS.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    return (root / "RESULTS.md").read_text(), records


def verdict_line(md):
    return next(line for line in md.splitlines() if line.startswith("- `ebm_x`"))


@pytest.mark.parametrize("case, ebm, control, failed", [
    ("wins", dict(mcd=9.0, predicted_mos=3.05), dict(mcd=9.6), None),
    ("sounds worse", dict(mcd=9.0, predicted_mos=2.5), dict(mcd=9.6), "predicted MOS not worse outside the noise"),
    ("sharpening does as well", dict(mcd=9.0), dict(mcd=8.8), "MCD below the control's outside the noise"),
    ("MCD within the noise", dict(mcd=10.0), dict(mcd=10.5), "MCD lower outside the noise"),
])
def test_verdict_needs_mcd_mos_pitch_and_the_control(tmp_path, case, ebm, control, failed):
    dirs = results_tree(tmp_path, ebm=dict(log_f0_rmse=0.09, ffe=0.18, **ebm), control=control)
    md, records = make_results(tmp_path, dirs)
    line = verdict_line(md)
    assert ("**beats Tacotron 2**" in line) == (failed is None), line
    assert line.count(": NO") == (failed is not None) and (failed is None or f"{failed}: NO" in line), line
    assert "predicted MOS" in line and "mel distance" in line and "silence share of MCD" in line
    # the table above the sentences says the same: the failed condition's cell, and the last column
    glance = next(row for row in md.splitlines() if row.startswith("| `ebm_x` ("))
    cells = [c.strip() for c in glance.strip("|").split("|")]
    assert len(cells) == 7 and cells[-1] == ("**yes**" if failed is None else "no"), glance
    assert sum(c.endswith("✗") for c in cells[1:6]) == (failed is not None), glance
    control = next(row for row in md.splitlines() if row.startswith("| control: Tacotron 2, variance"))
    assert "✓" not in control and "✗" not in control and control.endswith("| - |")
    # every row carries the three measures, each with its difference from Tacotron 2 and its interval
    table = md[md.index("## Measures a vocoder cannot game"):]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 4 and rows[0].startswith("| analysis-synthesis |")
    for row in rows:
        cells = row.split(" | ")
        assert len(cells) == 3 + 2 * 3
        if "Tacotron 2 |" not in row:
            assert all("[" in c for c in cells[4::2]), row
    by_system = {r["system"]: r for r in records}
    for name in ("analysis-synthesis", "tacotron2", "control_gv", "ebm"):
        r = by_system[name]
        assert r["predicted_mos"] is not None and r["mel_distance"] is not None
        assert r["mcd_silence_share"] is not None
        if name != "tacotron2":
            d = r["eval"]["diff_vs_tacotron2_ci95"]
            for key in ("predicted_mos", "mel_distance", "mcd_silence_share"):
                assert len(d[key]) == 3 and d[key][1] <= d[key][0] <= d[key][2]
    assert by_system["analysis-synthesis"]["mel_distance"] < 0.1


def test_verdict_without_a_control_says_so(tmp_path):
    dirs = results_tree(tmp_path, ebm=dict(mcd=9.0))
    md, _ = make_results(tmp_path, dirs, control=False)
    assert "no variance-scaling control was run" in verdict_line(md)


def test_results_are_written_when_a_measure_is_nan_throughout(tmp_path):
    """Issue #26: no frame voiced in both (a baseline that stops after two frames) made log-F0 RMSE NaN in every
    row, and a log-scaled plot then stopped stage 7 before RESULTS.md was written."""
    nan = dict(log_f0_rmse=float("nan"), gpe=float("nan"))
    dirs = results_tree(tmp_path, ebm=dict(mcd=9.0, **nan), control=nan, base=nan,
                        gt=dict(mcd=6.0, mel_distance=0.0, **nan))
    md, records = make_results(tmp_path, dirs)
    row = next(line for line in md.splitlines() if line.startswith("| Tacotron 2 |"))
    assert "| NaN |" in row
    assert all(r["log_f0_rmse"] is None and r["mcd"] is not None for r in records)
    assert (tmp_path / "plots/metrics_vs_steps.png").is_file()
    assert "**does not beat Tacotron 2**" in verdict_line(md)  # no pitch measure: no win claimed


@pytest.mark.parametrize("worse_earlier, improved", [
    (dict(mcd=1.0, ffe=0.05), ["MCD", "FFE"]),  # training on lowered MCD and FFE: not levelled off
    ({}, []),  # the same decodes: converged by this check
])
def test_the_convergence_check_compares_tacotron2_with_its_training_two_thirds_of_the_way(tmp_path, worse_earlier,
                                                                                           improved):
    dirs = results_tree(tmp_path, ebm=dict(mcd=9.0))
    rule = tmp_path / "exp/tts/at_two_thirds/decode_free_running"
    (rule / "dev").mkdir(parents=True)
    for name in ("scores_griffin_lim.tsv", "scores_griffin_lim.f0.tsv"):  # Tacotron 2's dev scores, made worse
        shutil.copy(dirs["base"] / "dev" / name, rule / "dev" / name)
    from ebm.scoring import COLUMNS

    table = read_scores(str(rule / "dev/scores_griffin_lim.tsv"))
    (rule / "dev/scores_griffin_lim.tsv").write_text("utt\t" + "\t".join(COLUMNS) + "\n" + "".join(
        u + "\t" + "\t".join(f"{v[c] + worse_earlier.get(c, 0.0):.5f}" for c in COLUMNS) + "\n"
        for u, v in table.items()))
    from ebm.bin import make_results as mr

    mr.main(["--dev_set", "dev", "--eval_set", "eval1", "--vocoder_tag", "griffin_lim", "--ground_truth",
             str(dirs["gt"]), "--baseline", str(dirs["base"]), "--ebm", str(dirs["ebm"]), "--baseline_two_thirds",
             str(rule), "--baseline_two_thirds_epoch", "153", "--output_md", str(tmp_path / "RESULTS.md"), "--output_json", str(tmp_path / "RESULTS.json"),
             "--plot_dir", str(tmp_path / "plots")])
    md = (tmp_path / "RESULTS.md").read_text()
    section = md[md.index("## Is Tacotron 2 trained long enough? (dev)"):md.index("## All systems")]
    mcd_row = next(line for line in section.splitlines() if line.startswith("| MCD |"))
    assert mcd_row.endswith("| better |" if improved else "| within the noise |"), mcd_row
    if improved:
        assert "The last third of the training still improved MCD, FFE outside the noise" in section
        assert "the baseline had not levelled off" in section
        assert section.count("| better |") == 2 and section.count("| within the noise |") == 3
    else:
        assert "by this check the baseline had levelled off" in section
    records = json.loads((tmp_path / "RESULTS.json").read_text())
    check = next(r for r in records if r["system"] == "tacotron2")["convergence_check"]
    assert check["improved"] == improved and len(check["measures"]) == 5 and check["two_thirds_epoch"] == 153
    assert "| measure | epoch 153 | trained on |" in section
    mcd = next(m for m in check["measures"] if m["key"] == "mcd")
    lo, hi = mcd["diff_ci95"][1:]
    assert (hi < 0) == bool(improved) and lo <= mcd["diff_ci95"][0] <= hi
    # the listening page and the reproduction check see the same rows as before (no new record)
    assert [r["system"] for r in records] == ["analysis-synthesis", "tacotron2", "ebm"]


def test_old_scores_without_the_new_columns_are_refused(tmp_path):
    dirs = results_tree(tmp_path)
    old = dirs["base"] / "eval1/scores_griffin_lim.tsv"
    old.write_text("utt\tmcd\tlog_f0_rmse\tvde\tgpe\tffe\nu0\t1\t1\t1\t1\t1\n")
    with pytest.raises(EbmError, match="lacks the columns mel_distance, mcd_silence_share, predicted_mos.*rerun "
                                       "stage 7"):
        make_results(tmp_path, dirs)
    assert not (tmp_path / "RESULTS.md").exists()
