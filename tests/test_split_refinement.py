"""The refinement split: the part of a Langevin step along the true correction, and the rest."""

import os

import numpy as np
import pytest
import soundfile as sf

from ebm.bin import split_refinement
from ebm.cli import EbmError
from ebm.vocoder import FeatureSettings


def test_split_step_separates_the_correction_from_an_orthogonal_error():
    rng = np.random.default_rng(0)
    h, w = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    d = w - h
    e = rng.normal(size=d.shape)
    e -= (e * d).sum() / (d * d).sum() * d  # orthogonal to the correction
    along, rest, st = split_refinement.split_step(h, h + 0.5 * d + e, w)
    assert st["c"] == pytest.approx(0.5)
    np.testing.assert_allclose(along, h + 0.5 * d, atol=1e-5)
    np.testing.assert_allclose(rest, h + e, atol=1e-5)
    norm_d, norm_e = np.linalg.norm(d), np.linalg.norm(e)
    assert st["cos"] == pytest.approx(0.5 * norm_d / np.hypot(0.5 * norm_d, norm_e))
    assert st["ratio"] == pytest.approx(np.hypot(0.5 * norm_d, norm_e) / norm_d)
    assert st["gain"] == pytest.approx(1 - np.linalg.norm(w - (h + 0.5 * d + e)) ** 2 / norm_d ** 2)


def _write_decode(root, feats):
    os.makedirs(os.path.join(root, "norm"))
    with open(os.path.join(root, "norm", "feats.scp"), "w") as f:
        for key, x in feats.items():
            path = os.path.join(root, "norm", f"{key}.npy")
            np.save(path, x.astype(np.float32))
            f.write(f"{key} {path}\n")


@pytest.fixture
def corpus(tmp_path):
    """Two noise 'recordings', their stats, Tacotron-like hypotheses and a refinement halfway to the reference."""
    rng = np.random.default_rng(1)
    settings = FeatureSettings()
    mels, lines = {}, []
    for key in ("u1", "u2"):
        wav = (0.1 * rng.normal(size=11025) * np.hanning(11025)).astype(np.float32)
        path = str(tmp_path / f"{key}.wav")
        sf.write(path, wav, settings.fs, subtype="PCM_16")
        wav, _ = sf.read(path, dtype="float32")
        mels[key] = settings.logmel(wav)
        lines.append(f"{key} {path}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    allm = np.concatenate(list(mels.values()))
    np.savez(tmp_path / "feats_stats.npz", count=len(allm), sum=allm.sum(0), sum_square=(allm ** 2).sum(0))
    mean, std = allm.mean(0), allm.std(0)
    ref = {k: (m - mean) / std for k, m in mels.items()}
    init = {k: r + 0.05 * rng.normal(size=r.shape) for k, r in ref.items()}
    _write_decode(str(tmp_path / "init"), init)
    _write_decode(str(tmp_path / "refined"), {k: init[k] + 0.5 * (ref[k] - init[k]) for k in ref})
    args = ["--ref_wav_scp", str(tmp_path / "wav.scp"), "--init_dir", str(tmp_path / "init"),
            "--refined_dir", str(tmp_path / "refined"), "--stats_file", str(tmp_path / "feats_stats.npz"),
            "--output_dir", str(tmp_path / "split")]
    return tmp_path, args, mean, std


def test_split_refinement_writes_both_parts_as_decodes(corpus):
    root, args, mean, std = corpus
    split_refinement.main(args)
    rows = [line.split("\t") for line in (root / "split" / "summary.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["u1", "u2"]
    for _, c, cos, ratio, gain in rows:  # the step is half the correction, exactly along it
        assert float(c) == pytest.approx(0.5, abs=1e-3) and float(cos) == pytest.approx(1.0, abs=1e-3)
        assert float(ratio) == pytest.approx(0.5, abs=1e-3) and float(gain) == pytest.approx(0.75, abs=1e-3)
    for part in ("along", "rest"):
        for kind in ("norm", "denorm"):
            keys = [line.split()[0] for line in (root / "split" / part / kind / "feats.scp").read_text().splitlines()]
            assert keys == ["u1", "u2"]
        norm = np.load(root / "split" / part / "norm" / "u1.npy")
        np.testing.assert_allclose(np.load(root / "split" / part / "denorm" / "u1.npy"), norm * std + mean,
                                   rtol=1e-4, atol=1e-4)
    # nothing is left along the correction's orthogonal complement: "rest" is the initial hypothesis
    rest = np.load(root / "split" / "rest" / "norm" / "u1.npy")
    init = np.load(root / "init" / "norm" / "u1.npy")
    np.testing.assert_allclose(rest, init, atol=1e-3)
    assert not os.path.exists(str(root / "split") + ".tmp")


def test_split_refinement_refuses_a_refinement_of_other_hypotheses(corpus):
    root, args, _, _ = corpus
    np.save(root / "refined" / "norm" / "u2.npy", np.zeros((3, 80), dtype=np.float32))
    with pytest.raises(EbmError, match="u2: refined"):
        split_refinement.main(args)
    assert not (root / "split").exists()


def test_split_refinement_names_missing_inputs(corpus):
    root, args, _, _ = corpus
    os.remove(root / "feats_stats.npz")
    with pytest.raises(EbmError, match="feats_stats.npz does not exist"):
        split_refinement.main(args)
    (root / "init" / "norm" / "feats.scp").write_text(f"u1 {root / 'init' / 'norm' / 'u1.npy'}\n")
    np.savez(root / "feats_stats.npz", count=1, sum=np.zeros(80), sum_square=np.ones(80))
    with pytest.raises(EbmError, match="no initial hypothesis"):
        split_refinement.main(args)


def test_exact_shares_of_the_correction(corpus):
    """h + A (W - h): share 0 is the hypothesis, share 1 the warped reference, and the split's "along" of a
    refinement halfway to it is the exact share 0.5; without a refinement only the shares are written."""
    root, args, _, _ = corpus
    split_refinement.main(args + ["--exact_shares", "0,0.5,1"])
    out = root / "split"
    init = np.load(root / "init" / "norm" / "u1.npy")
    np.testing.assert_allclose(np.load(out / "exact_0" / "norm" / "u1.npy"), init, atol=1e-6)
    np.testing.assert_allclose(np.load(out / "exact_0.5" / "norm" / "u1.npy"),
                               np.load(out / "along" / "norm" / "u1.npy"), atol=1e-3)
    full, half = (np.load(out / f"exact_{a}" / "norm" / "u1.npy") for a in ("1", "0.5"))
    np.testing.assert_allclose(half, (init + full) / 2, atol=1e-5)
    assert np.abs(full - init).max() > 1e-3  # the reference is not the hypothesis

    alone = [a for a in args if a not in ("--refined_dir", str(root / "refined"))]
    split_refinement.main(alone + ["--exact_shares", "0.3"])
    assert sorted(p.name for p in out.iterdir()) == ["exact_0.3"]  # a fresh output, no split, no summary
    keys = [line.split()[0] for line in (out / "exact_0.3" / "denorm" / "feats.scp").read_text().splitlines()]
    assert keys == ["u1", "u2"]
    with pytest.raises(EbmError, match="nothing to write"):
        split_refinement.main(alone)
    with pytest.raises(EbmError, match="--exact_shares 'a,b'"):
        split_refinement.main(alone + ["--exact_shares", "a,b"])
