"""The vocoder front door of stage 7: Griffin-Lim works out of the box; a parallel-wavegan checkpoint is used only
with its stats.h5 and only when its features are the recipe's."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import run_module
from ebm.cli import EbmError
from ebm.vocoder import FeatureSettings, GriffinLim, ParallelWaveGAN, load_vocoder

FS, HOP = 22050, 256


def tone(seconds=0.5, f0=440.0):
    t = np.arange(int(FS * seconds)) / FS
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def pwg_dir(tmp_path, **overrides):
    """A tiny MelGAN generator saved the way parallel-wavegan's trainer saves one, with config.yml and stats.h5."""
    from parallel_wavegan.models import MelGANGenerator
    from parallel_wavegan.utils import write_hdf5

    params = dict(in_channels=80, out_channels=1, kernel_size=7, channels=256, upsample_scales=[8, 8, 4],
                  stack_kernel_size=3, stacks=1)
    torch.manual_seed(0)
    gen = MelGANGenerator(**params)
    config = dict(sampling_rate=FS, fft_size=1024, hop_size=HOP, win_length=1024, num_mels=80, fmin=80, fmax=7600,
                  format="hdf5", generator_type="MelGANGenerator", generator_params=params)
    config.update(overrides)
    d = tmp_path / "voc"
    d.mkdir()
    torch.save({"model": {"generator": gen.state_dict()}}, d / "checkpoint-10steps.pkl")
    (d / "config.yml").write_text(yaml.safe_dump(config))
    write_hdf5(str(d / "stats.h5"), "mean", np.zeros(80, np.float32))
    write_hdf5(str(d / "stats.h5"), "scale", np.ones(80, np.float32))
    return d


def test_griffin_lim_restores_a_tone():
    settings = FeatureSettings()
    mel = settings.logmel(tone())
    wav = load_vocoder("", settings)(mel)
    assert isinstance(load_vocoder(None, settings), GriffinLim)
    assert abs(len(wav) - mel.shape[0] * HOP) <= 1024
    spec = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spec) * FS / len(wav) - 440.0) < 10.0


def test_pwg_checkpoint_with_matching_settings_loads_and_makes_audio(tmp_path):
    d = pwg_dir(tmp_path)
    voc = load_vocoder(str(d / "checkpoint-10steps.pkl"), FeatureSettings())
    assert isinstance(voc, ParallelWaveGAN)
    wav = voc(np.zeros((20, 80), np.float32))
    assert wav.shape == (20 * HOP,) and np.isfinite(wav).all()


def test_pwg_without_stats_is_refused(tmp_path):
    d = pwg_dir(tmp_path)
    os.remove(d / "stats.h5")
    with pytest.raises(EbmError, match="stats.h5 is missing"):
        load_vocoder(str(d / "checkpoint-10steps.pkl"), FeatureSettings())


@pytest.mark.parametrize("key,value,option", [("hop_size", 300, "n_shift"), ("fmax", 8000, "fmax"),
                                              ("sampling_rate", 24000, "fs"), ("num_mels", 64, "n_mels")])
def test_pwg_with_other_features_is_refused_naming_the_setting(tmp_path, key, value, option):
    d = pwg_dir(tmp_path, **{key: value})
    with pytest.raises(EbmError, match=f"{key}={value} but the recipe's --{option}"):
        load_vocoder(str(d / "checkpoint-10steps.pkl"), FeatureSettings())


def test_vocode_cli_refuses_a_mismatching_vocoder_and_writes_nothing(tmp_path):
    d = pwg_dir(tmp_path, hop_size=300)
    sf.write(tmp_path / "a.wav", tone(), FS)
    (tmp_path / "wav.scp").write_text(f"utt1 {tmp_path / 'a.wav'}\n")
    out = tmp_path / "out"
    proc = run_module("ebm.bin.vocode", "--wav_scp", tmp_path / "wav.scp", "--output_dir", out,
                      "--vocoder_file", d / "checkpoint-10steps.pkl")
    assert proc.returncode == 1
    assert "ERROR:" in proc.stderr and "hop_size=300" in proc.stderr
    assert not (out / "wav.scp").exists()


def test_vocode_cli_analysis_synthesis_and_wrong_rate(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), FS)
    sf.write(tmp_path / "b.wav", tone(), 16000)
    (tmp_path / "wav.scp").write_text(f"utt1 {tmp_path / 'a.wav'}\n")
    run_module("ebm.bin.vocode", "--wav_scp", tmp_path / "wav.scp", "--output_dir", tmp_path / "out",
               "--griffin_lim_iters", 4, check=True)
    wav, fs = sf.read(tmp_path / "out" / "utt1.wav")
    assert fs == FS and abs(len(wav) - len(tone())) <= 1024
    assert (tmp_path / "out" / "wav.scp").read_text().startswith("utt1 ")
    (tmp_path / "wav2.scp").write_text(f"utt2 {tmp_path / 'b.wav'}\n")
    proc = run_module("ebm.bin.vocode", "--wav_scp", tmp_path / "wav2.scp", "--output_dir", tmp_path / "out2")
    assert proc.returncode == 1 and "utt2" in proc.stderr and "16000 Hz" in proc.stderr
    assert not (tmp_path / "out2" / "wav.scp").exists()


def test_vocode_cli_several_systems_in_one_call(tmp_path):
    """Stage 7's call per set: the analysis-synthesis row from wavs and a decode from its mels, one vocoder, each
    system's wavs and wav.scp in its own directory, the same audio as vocoding each alone."""
    from ebm.io import read_scp

    sf.write(tmp_path / "a.wav", tone(), FS)
    (tmp_path / "wav.scp").write_text(f"utt1 {tmp_path / 'a.wav'}\n")
    mel = FeatureSettings().logmel(tone())
    np.save(tmp_path / "utt1.npy", mel)
    (tmp_path / "feats.scp").write_text(f"utt1 {tmp_path / 'utt1.npy'}\n")
    run_module("ebm.bin.vocode", "--system", "wav", tmp_path / "wav.scp", tmp_path / "gt", "--system", "feats",
               tmp_path / "feats.scp", tmp_path / "dec", "--griffin_lim_iters", 4, check=True)
    run_module("ebm.bin.vocode", "--feats_scp", tmp_path / "feats.scp", "--output_dir", tmp_path / "alone",
               "--griffin_lim_iters", 4, check=True)
    for out in ("gt", "dec"):
        assert [k for k, _ in read_scp(tmp_path / out / "wav.scp")] == ["utt1"]
    np.testing.assert_array_equal(sf.read(tmp_path / "dec/utt1.wav")[0], sf.read(tmp_path / "alone/utt1.wav")[0])
    proc = run_module("ebm.bin.vocode", "--system", "mel", tmp_path / "feats.scp", tmp_path / "x")
    assert proc.returncode == 1 and "KIND is feats or wav" in proc.stderr


def test_a_config_with_python_tags_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    """`yaml.Loader` would run os.system while reading the config; the safe loader refuses the tag."""
    d = pwg_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    with open(d / "config.yml", "a") as f:
        f.write('x: !!python/object/apply:os.system ["touch pwned"]\n')
    with pytest.raises(EbmError, match="config.yml is refused: it is not a plain YAML config") as e:
        load_vocoder(str(d / "checkpoint-10steps.pkl"), FeatureSettings())
    assert "python/object/apply:os.system" in str(e.value)
    assert not (tmp_path / "pwned").exists()


def test_a_config_with_tuples_as_parallel_wavegan_dumps_them_still_loads(tmp_path):
    d = pwg_dir(tmp_path)
    text = (d / "config.yml").read_text()
    (d / "config.yml").write_text(text + "extra: !!python/tuple [1, 2]\n")
    assert isinstance(load_vocoder(str(d / "checkpoint-10steps.pkl"), FeatureSettings()), ParallelWaveGAN)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_a_vocoder"])
def test_a_corrupt_checkpoint_is_named_as_such_without_unsafe_advice(tmp_path, damage):
    d = pwg_dir(tmp_path)
    pkl = d / "checkpoint-10steps.pkl"
    if damage == "truncated":
        pkl.write_bytes(pkl.read_bytes()[:1000])
    elif damage == "garbage":
        pkl.write_bytes(b"\x80\x04not a checkpoint at all" * 10)
    else:
        torch.save({"weights": torch.zeros(3)}, pkl)
    with pytest.raises(EbmError) as e:
        load_vocoder(str(pkl), FeatureSettings())
    msg = str(e.value)
    assert str(pkl) in msg and "not a parallel-wavegan checkpoint" in msg and "fetch_vocoder" in msg
    assert "weights_only=False" not in msg


def test_config_numbers_pyyaml_reads_as_strings_are_compared_as_numbers(tmp_path):
    d = pwg_dir(tmp_path)
    text = (d / "config.yml").read_text().replace("sampling_rate: 22050", "sampling_rate: 2.205e4")
    (d / "config.yml").write_text(text)
    assert yaml.safe_load(text)["sampling_rate"] == "2.205e4"
    assert isinstance(load_vocoder(str(d / "checkpoint-10steps.pkl"), FeatureSettings()), ParallelWaveGAN)
    (d / "config.yml").write_text(text.replace("sampling_rate: 2.205e4", "sampling_rate: fast"))
    with pytest.raises(EbmError, match="sampling_rate='fast' is not a number"):
        load_vocoder(str(d / "checkpoint-10steps.pkl"), FeatureSettings())
