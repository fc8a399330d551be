"""Stage-7 metrics on synthetic voices whose F0, voicing and timing are known by construction."""

import math

import numpy as np
import pytest
import soundfile as sf

from ebm.cli import EbmError
from ebm import metrics
from ebm.metrics import dtw_path, f0, f0_errors, mcd, mel_cepstrum, score_pair
from ebm.scoring import read_scores

FS = 22050


def _envelope(freq, u):
    """A vowel-like spectral envelope gliding with normalised time ``u``, independent of F0: a pitch shift leaves the
    mel-cepstrum nearly unchanged, while a mistimed alignment does not."""
    f1, f2 = 400.0 + 500.0 * u, 2000.0 - 700.0 * u
    return (np.exp(-((freq - f1) / 200.0) ** 2) + 0.6 * np.exp(-((freq - f2) / 300.0) ** 2)
            + 0.3 * np.exp(-((freq - 2900.0) / 400.0) ** 2) + 0.05 / (1.0 + freq / 1000.0))


def voice(seconds=0.8, f0_scale=1.0, noise=1e-3, seed=0):
    """``seconds`` of a harmonic complex on a 130 -> 170 Hz glide (times ``f0_scale``) plus a little noise, between
    60 ms of digital silence; a longer one is the same utterance spoken slower. The silent margins keep harvest's
    unreliable edge frames out of the comparisons, as in real recordings."""
    n = int(seconds * FS)
    u = np.arange(n) / n
    contour = f0_scale * (130.0 + 40.0 * u + 8.0 * np.sin(2 * np.pi * 2 * u))
    phase = 2 * np.pi * np.cumsum(contour) / FS
    k = np.arange(1, int(0.5 * FS / contour.max()))[:, None]
    x = np.sum(_envelope(k * contour, u) * np.sin(k * phase), axis=0)
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * FS))  # no clicks
    x = 0.5 * fade * x / np.max(np.abs(x)) + noise * np.random.default_rng(seed).standard_normal(n)
    margin = np.zeros(int(0.06 * FS))
    return np.concatenate([margin, x, margin])


@pytest.fixture(scope="module")
def ref():
    return voice()


def test_identical_signals_score_zero(ref):
    scores = score_pair(ref, ref.copy(), FS)
    assert scores["mcd"] == 0.0
    assert scores["log_f0_rmse"] == 0.0
    assert scores["vde"] == scores["gpe"] == scores["ffe"] == 0.0
    # the path of identical signals is the diagonal, over the frames where F0 and mel-cepstrum both exist
    assert scores["n_frames"] == len(f0(ref, FS))


def test_mcd_of_a_gain_change_is_the_c0_shift(ref):
    # doubling the amplitude adds ln 2 to c0 only: MCD = 10 / ln 10 * sqrt(2) * ln 2 dB (about 4.26)
    start = int(0.07 * FS)  # voiced throughout, so that the eps floor plays no part
    seg = ref[start:start + 8192]
    assert mcd(seg, 2.0 * seg, FS) == pytest.approx(10.0 / math.log(10.0) * math.sqrt(2.0) * math.log(2.0), rel=1e-6)


def test_mcd_grows_with_noise(ref):
    rng = np.random.default_rng(1)
    white = rng.standard_normal(len(ref))
    small, large = mcd(ref, ref + 0.003 * white, FS), mcd(ref, ref + 0.03 * white, FS)
    assert 0.0 < small < large


def test_ten_percent_f0_shift(ref):
    scores = f0_errors(ref, voice(f0_scale=1.1, seed=2), FS)
    assert scores["log_f0_rmse"] == pytest.approx(math.log(1.1), abs=0.03)
    assert scores["gpe"] == 0.0
    assert scores["vde"] < 0.1


def test_half_octave_shift_is_a_gross_error(ref):
    scores = f0_errors(ref, voice(f0_scale=1.5, seed=3), FS)
    assert scores["gpe"] > 0.9
    assert scores["ffe"] > 0.5
    assert scores["log_f0_rmse"] == pytest.approx(math.log(1.5), abs=0.1)


def test_unvoiced_middle_half_is_a_voicing_error(ref):
    gen = ref.copy()
    a, b = len(gen) // 4, 3 * len(gen) // 4
    # noise, not silence: DTW would pair digital silence with the reference's silent margin and hide the error
    gen[a:b] = 0.01 * np.random.default_rng(4).standard_normal(b - a)
    scores = f0_errors(ref, gen, FS)
    assert 0.3 < scores["vde"] < 0.7
    assert scores["ffe"] >= scores["vde"]


def test_dtw_absorbs_a_slower_rendition(ref):
    slower = score_pair(ref, voice(seconds=0.96, seed=5), FS)
    other_pitch = mcd(ref, voice(f0_scale=1.5, seed=3), FS)
    # ~0.3 of the other pitch's MCD; frame by frame (no DTW) the gliding envelope would make it exceed it
    assert slower["mcd"] < 0.5 * other_pitch
    # the same contour, re-timed: F0 along the path matches (frame by frame: log-F0 RMSE ~0.04)
    assert slower["log_f0_rmse"] < 0.02 and slower["gpe"] == 0.0


def test_dtw_path_is_exact_and_monotone():
    a = np.array([[0.0], [1.0], [2.0]])
    b = np.array([[0.0], [0.0], [1.0], [2.0]])
    i, j = dtw_path(a, b)
    assert i.tolist() == [0, 0, 1, 2] and j.tolist() == [0, 1, 2, 3]


def test_mel_cepstrum_scale_short_and_silent_input(ref):
    mid = len(ref) // 2
    as_int16 = np.round(ref[mid:mid + 4096] * 32767).astype(np.int16)
    c_int, c_float = mel_cepstrum(as_int16, FS), mel_cepstrum(as_int16 / 32768.0, FS)
    assert c_int.shape == ((4096 - 1024) // 256 + 1, 35)
    np.testing.assert_allclose(c_int, c_float, atol=1e-8)
    short = mel_cepstrum(as_int16[:300], FS)  # shorter than one frame: zero-padded to one
    assert short.shape == (1, 35) and np.all(np.isfinite(short))
    silent = mel_cepstrum(np.zeros(2048), FS)  # digital silence: the eps floor, no NaN or error
    assert np.all(np.isfinite(silent)) and np.all(silent[:, 0] < c_int[:, 0].min())


def test_bad_inputs_are_user_errors(ref, tmp_path):
    with pytest.raises(EbmError, match="fs=8000"):
        mel_cepstrum(ref, 8000)
    with pytest.raises(EbmError, match="fs=8000"):
        score_pair(ref, ref, 8000)
    with pytest.raises(EbmError, match="generated wav is empty"):
        mcd(ref, np.zeros(0), FS)
    path = tmp_path / "gen.wav"
    sf.write(str(path), ref[:1600], 16000, subtype="PCM_16")
    with pytest.raises(EbmError, match=r"gen\.wav is sampled at 16000 Hz.*fs=22050"):
        mcd(ref, path, FS)


def test_mcd_framing_is_a_slice_of_the_centred_analysis():
    """analyse() takes the MCD framing from the centred mel-cepstrum; it must equal the direct computation."""
    rng = np.random.default_rng(3)
    x = 0.1 * rng.standard_normal(22050 // 2)
    a = metrics.analyse(x, 22050)
    np.testing.assert_allclose(a["mcep"], metrics.mel_cepstrum(x, 22050), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a["mcep_centered"], metrics.mel_cepstrum(x, 22050, center=True))


def test_common_voiced_f0_separates_pitch_from_voicing(ref):
    """A system that leaves half the speech unvoiced is scored on the frames every system voices, not on fewer."""
    half_unvoiced = ref.copy()
    a, b = len(ref) // 4, 3 * len(ref) // 4
    half_unvoiced[a:b] = 0.01 * np.random.default_rng(4).standard_normal(b - a)
    shifted = voice(f0_scale=1.1, seed=2)
    r = metrics.analyse(ref, FS)
    on_itself = metrics.f0_on_ref_frames(r, r)
    np.testing.assert_array_equal(on_itself, r["f0"][:len(on_itself)])
    out = metrics.common_voiced_f0(r, [metrics.analyse(half_unvoiced, FS), metrics.analyse(shifted, FS)])
    ref_voiced = int(np.sum(r["f0"] > 0))
    assert 0.3 * ref_voiced < out["n_common"] < 0.7 * ref_voiced
    # the common frames are those the half-unvoiced system voices (the shifted one voices them all), so its
    # score is its stage-7 log-F0 RMSE (edge frames of the cut included); the shifted one is scored there too
    assert out["log_f0_rmse"][0] == pytest.approx(f0_errors(ref, half_unvoiced, FS)["log_f0_rmse"], abs=0.01)
    assert out["log_f0_rmse"][1] == pytest.approx(math.log(1.1), abs=0.03)
    assert 0.3 < out["voiced_share"][0] < 0.7 and out["voiced_share"][1] > 0.9


def three_systems(ref, tmp_path):
    """wav.scps of two utterances each: the reference, a system 10% sharp in pitch and one nearly the reference."""
    scps = {}
    for name, sig in (("ref", ref), ("base", voice(f0_scale=1.1, seed=2)), ("sys", ref + 0.001)):
        with open(tmp_path / f"{name}.scp", "w") as f:
            for utt in ("u1", "u2"):
                sf.write(str(tmp_path / f"{name}_{utt}.wav"), sig, FS, subtype="PCM_16")
                f.write(f"{utt} {tmp_path / f'{name}_{utt}.wav'}\n")
        scps[name] = str(tmp_path / f"{name}.scp")
    return scps


def test_compare_f0_cli(ref, tmp_path, capsys):
    from ebm.bin import compare_f0

    scps = three_systems(ref, tmp_path)
    out = tmp_path / "f0.tsv"
    compare_f0.main(["--ref_wav_scp", scps["ref"], "--system", "base", scps["base"], "--system", "sys", scps["sys"],
                     "--output", str(out), "--n_boot", "100"])
    printed = capsys.readouterr().out
    assert "2 utterances" in printed and "minus base: -0.09" in printed
    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == ["utt", "n_common", "base_log_f0_rmse", "base_voiced_share",
                                    "sys_log_f0_rmse", "sys_voiced_share"]
    assert [line.split("\t")[0] for line in lines[1:]] == ["u1", "u2"]
    with pytest.raises(EbmError, match="at least two"):
        compare_f0.main(["--ref_wav_scp", scps["ref"], "--system", "sys", scps["sys"]])


def test_score_wavs_searches_the_given_f0_range(ref, tmp_path):
    from ebm.bin import score_wavs

    scps = {}
    for name, sig in (("ref", ref), ("gen", voice(f0_scale=1.1, seed=2))):
        sf.write(str(tmp_path / f"{name}.wav"), sig, FS, subtype="PCM_16")
        (tmp_path / f"{name}.scp").write_text(f"u1 {tmp_path / f'{name}.wav'}\n")
        scps[name] = str(tmp_path / f"{name}.scp")

    def score(*opts):
        out = tmp_path / "scores.tsv"
        score_wavs.main(["--ref_wav_scp", scps["ref"], "--system", scps["gen"], str(out), *opts])
        return read_scores(str(out))["u1"]

    wide = score()  # 40-800 Hz holds the 130-190 Hz glides: the pitch error is the 10% shift
    assert wide["log_f0_rmse"] == pytest.approx(math.log(1.1), abs=0.03) and wide["vde"] < 0.05
    # a floor above both voices' F0: the tracker may not answer at their pitch, so the scores must change
    high = score("--f0min", "250", "--f0max", "800")
    assert high["vde"] > wide["vde"] + 0.1 or abs(high["log_f0_rmse"] - wide["log_f0_rmse"]) > 0.05
    with pytest.raises(EbmError, match="F0 search range --f0min 500 --f0max 400"):
        score("--f0min", "500", "--f0max", "400")


def test_score_wavs_f0_tracks_give_the_comparison_that_analysing_the_wavs_gives(ref, tmp_path):
    """The results' pitch comparison reads the tracks scoring wrote: the same rows as ebm.bin.compare_f0's."""
    from ebm.bin import score_wavs
    from ebm.scoring import Analyses, compare, compare_tracks, f0_tracks_path, read_f0_tracks

    scps = three_systems(ref, tmp_path)
    outs = [str(tmp_path / f"{name}.tsv") for name in ("base", "sys")]
    score_wavs.main(["--ref_wav_scp", scps["ref"], "--system", scps["base"], outs[0], "--system", scps["sys"],
                     outs[1]])
    assert f0_tracks_path(outs[0]) == str(tmp_path / "base.f0.tsv")
    tables = [read_f0_tracks(f0_tracks_path(o)) for o in outs]
    from_tracks = compare_tracks(tables, ["base", "sys"])
    r = Analyses(scps["ref"], "reference")
    from_wavs = compare(r, [Analyses(scps[n], n, ref_fs=r) for n in ("base", "sys")])
    assert [row[0] for row in from_tracks] == ["u1", "u2"]
    for a, b in zip(from_tracks, from_wavs):
        assert a[:2] == b[:2]
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_array_equal(a[3], b[3])
    with pytest.raises(EbmError, match=r"a scores table's name ends in \.tsv"):
        score_wavs.main(["--ref_wav_scp", scps["ref"], "--system", scps["sys"], str(tmp_path / "sys.txt")])
    tables[1]["u1"] = (tables[1]["u1"][0] * 2, tables[1]["u1"][1])
    with pytest.raises(EbmError, match="u1: the reference's F0 differs"):
        compare_tracks(tables, ["base", "sys"])
