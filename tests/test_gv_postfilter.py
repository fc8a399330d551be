"""The variance-scaling control of stage 7: Tacotron 2's decodes sharpened without text or energy."""

import os

import numpy as np
import pytest

from ebm.bin.gv_postfilter import main, scale_variance
from ebm.cli import EbmError
from ebm.io import open_feats_scp, read_scp


def test_scaling_keeps_each_bins_utterance_mean_and_multiplies_its_deviations():
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32) * [1, 2, 3, 4] + [5, -1, 0, 2]
    y = scale_variance(x, 1.5)
    np.testing.assert_allclose(y.mean(0), x.mean(0), atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1.5 * x.std(0), rtol=1e-5)
    np.testing.assert_allclose(scale_variance(x, 1.0), x, atol=1e-6)


def _decode_dir(root, keys=("u1", "u2")):
    """A stage-4 decode dir of one set; denorm = norm * std + mean, as ESPnet's global_mvn writes it."""
    rng = np.random.default_rng(1)
    std, mean = np.array([2.0, 0.5, 1.0], np.float32), np.array([-3.0, 1.0, 0.0], np.float32)
    for kind in ("norm", "denorm"):
        os.makedirs(root / kind)
    lines = {"norm": [], "denorm": []}
    for i, k in enumerate(keys):
        norm = rng.normal(size=(10 + i, 3)).astype(np.float32)
        for kind, feats in (("norm", norm), ("denorm", norm * std + mean)):
            np.save(root / kind / f"{k}.npy", feats)
            lines[kind].append(f"{k} {root / kind / k}.npy\n")
    for kind in lines:
        (root / kind / "feats.scp").write_text("".join(lines[kind]))
    (root / "rtf").write_text("u1 0.1 10\nu2 0.2 11\n")
    return std, mean


def test_the_control_is_a_decode_dir_whose_norm_and_denorm_agree(tmp_path):
    std, mean = _decode_dir(tmp_path / "in")
    out = tmp_path / "decode_free_running_gv1.5" / "dev"
    main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(out), "--scale", "1.5"])
    assert not os.path.exists(str(out) + ".tmp")
    assert (out / "rtf").read_text() == (tmp_path / "in" / "rtf").read_text()  # its cost is Tacotron 2's
    for kind in ("norm", "denorm"):
        assert all(v.startswith(str(out / kind)) for _, v in read_scp(out / kind / "feats.scp"))
    src, norm, denorm = (open_feats_scp(p / "feats.scp") for p in (tmp_path / "in" / "norm", out / "norm",
                                                                   out / "denorm"))
    assert sorted(norm.keys()) == ["u1", "u2"]
    for k in norm.keys():
        np.testing.assert_allclose(norm[k], scale_variance(src[k], 1.5), atol=1e-5)
        # the filter commutes with the per-bin normalisation, so stage 7 can vocode the denormalised output
        np.testing.assert_allclose(denorm[k], norm[k] * std + mean, atol=1e-4)


def test_bad_scale_and_missing_decodes_are_refused_without_output(tmp_path):
    _decode_dir(tmp_path / "in")
    out = tmp_path / "ctl"
    with pytest.raises(EbmError, match="positive factor"):
        main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(out), "--scale", "0"])
    os.remove(tmp_path / "in" / "denorm" / "feats.scp")
    with pytest.raises(EbmError, match=r"denorm/feats.scp is missing: run stage 4"):
        main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(out), "--scale", "1.5"])
    assert not out.exists() and not (tmp_path / "ctl.tmp").exists()
