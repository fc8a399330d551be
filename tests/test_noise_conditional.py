"""A noise-conditional energy (DSM over noise levels) and annealed Langevin decoding."""

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ebm.bin import langevin_decode
from ebm.criteria import CombinedCriterion, DenoisingScoreMatching
from ebm.energy_network import EnergyNetwork
from ebm.espnet_model import ESPnetEBMModel
from ebm.langevin import LangevinSampler, langevin_from_config
from ebm.product_of_experts import ProductOfExperts

TINY = dict(vocab_size=7, odim=6, adim=16, aheads=2, elayers=1, eunits=16, dlayers=1, dunits=16, prenet_layers=1,
            prenet_chans=8, prenet_kernel=3, head_units=8, dropout_rate=0.0, positional_dropout_rate=0.0,
            pooling="sum")


def batch(B=2, T=9, N=4, D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, 7, (B, N), generator=g)
    feats = torch.randn(B, T, D, generator=g)
    return text, torch.full((B,), N), feats, torch.tensor([T, T - 3])[:B]


class PointMassEnergy:
    """The exact noise-conditional energy of data that is one mel ``mu``: E(y, s) = |y - mu|^2 / (2 s^2)."""

    noise_conditional = True

    def __init__(self, mu):
        self.mu = mu
        self.levels = []

    def energy_and_grad(self, text, text_lengths, feats, feats_lengths, create_graph=False, sigma=None):
        assert sigma is not None
        self.levels.append(float(sigma))
        valid = (torch.arange(feats.size(1))[None, :] < feats_lengths[:, None]).unsqueeze(-1).to(feats.dtype)
        diff = (feats - self.mu[:, :feats.size(1)]) * valid
        return diff.pow(2).flatten(1).sum(1) / (2 * sigma ** 2), diff / sigma ** 2


def test_noise_conditional_network_reads_sigma_and_refuses_calls_without_it():
    torch.manual_seed(0)
    net = EnergyNetwork(**TINY, noise_conditional=True).eval()
    text, tl, feats, fl = batch()
    with pytest.raises(ValueError, match="noise-conditional.*noise_level_max"):
        net(text, tl, feats, fl)
    e1, e2 = net(text, tl, feats, fl, sigma=0.1), net(text, tl, feats, fl, sigma=1.0)
    assert not torch.allclose(e1, e2)
    # one level per utterance is the same as calling each utterance alone at its level
    both = net(text, tl, feats, fl, sigma=torch.tensor([0.1, 1.0]))
    alone = net(text[1:], tl[1:], feats[1:, :int(fl[1])], fl[1:], sigma=1.0)
    assert torch.allclose(both, torch.stack([e1[0], alone[0]]), atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        net(text, tl, feats, fl, sigma=torch.tensor([0.1, 0.0]))
    plain = EnergyNetwork(**TINY)
    with pytest.raises(ValueError, match="not noise-conditional"):
        plain(text, tl, feats, fl, sigma=0.5)
    _, g = net.energy_and_grad(text, tl, feats, fl, sigma=0.3)
    assert g.shape == feats.shape and float(g[1, int(fl[1]):].abs().sum()) == 0.0


def test_dsm_gives_a_noise_conditional_network_the_level_of_each_hypothesis():
    with pytest.raises(ValueError, match="target: score"):
        DenoisingScoreMatching(noise_conditional=True)
    crit = DenoisingScoreMatching(0.1, 1.0, target="score", noise_conditional=True)
    ref = torch.randn(3, 5, 4)
    lengths = torch.tensor([5, 4, 2])
    seen = {}

    def score_fn(y, lengths, sigma):  # the exact score of the Gaussian kernel around the reference
        seen["sigma"] = sigma
        return (y - ref) / sigma.view(-1, 1, 1) ** 2

    loss, _ = crit.loss_on_own_hypothesis(ref, lengths, score_fn)
    assert seen["sigma"].shape == (3,) and bool(((seen["sigma"] >= 0.1) & (seen["sigma"] <= 1.0)).all())
    assert float(loss) < 1e-8
    comb = CombinedCriterion([{"name": "dsm", "conf": {"target": "score", "noise_conditional": True}}])
    assert comb.noise_conditional_labels == ["dsm"]


def test_the_model_refuses_criteria_that_do_not_tell_a_noise_conditional_network_its_level():
    net = EnergyNetwork(**TINY, noise_conditional=True)
    dsm_nc = {"name": "dsm", "conf": {"target": "score", "noise_conditional": True}}
    with pytest.raises(ValueError, match="dsm criteria that have noise_conditional"):
        ESPnetEBMModel(None, None, net, samplers=[], criteria=[{"name": "delta"}], refine_noise_level=0.5)
    with pytest.raises(ValueError, match="refine_noise_level"):
        ESPnetEBMModel(None, None, net, samplers=[], criteria=[dsm_nc])
    with pytest.raises(ValueError, match="no noise_conditional: true"):
        ESPnetEBMModel(None, None, EnergyNetwork(**TINY), samplers=[], criteria=[dsm_nc])


def test_dsm_training_of_a_noise_conditional_model_lowers_its_loss_and_validation_denoises():
    torch.manual_seed(0)
    net = EnergyNetwork(**TINY, noise_conditional=True)
    model = ESPnetEBMModel(None, None, net, samplers=[],
                           criteria=[{"name": "dsm", "conf": {"sigma_min": 0.2, "sigma_max": 1.0, "target": "score",
                                                              "noise_conditional": True}}],
                           refine_steps=1, refine_step_size=0.25, refine_normalize=False, refine_noise_level=0.5)
    text, tl, _, _ = batch(B=4, seed=1)
    feats = torch.randn(4, 8, 6).cumsum(1) * 0.3  # smooth mels, so denoising has structure to learn
    fl = torch.full((4,), 8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def mean_loss(n=8):
        torch.manual_seed(123)
        with torch.no_grad():
            return sum(float(model(text, tl, feats, fl)[0]) for _ in range(n)) / n

    model.eval()
    before = mean_loss()
    model.train()
    for _ in range(150):
        loss, _, _ = model(text, tl, feats, fl)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = mean_loss()
    assert after < 0.7 * before
    stats = model(text, tl, feats, fl)[1]
    assert float(stats["refine_gain"]) > 0  # one Tweedie step at the validation level moves towards the reference


def test_annealed_schedule_is_geometric_with_step_sizes_scaled_by_the_level_squared():
    s = LangevinSampler(steps=6, step_size=0.01, sigma=1.0, noise_level_max=1.0, noise_level_min=0.01, noise_levels=3)
    levels = [s.level(n) for n in range(1, 7)]
    assert levels == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert s.level(0) == pytest.approx(1.0) and s.level(7) == pytest.approx(0.01)
    assert [s.step_size_at(n) for n in (1, 3, 5)] == pytest.approx([100.0, 1.0, 0.01])
    assert LangevinSampler(steps=3, step_size=0.5).step_size_at(2) == 0.5
    with pytest.raises(ValueError, match="both"):
        LangevinSampler(noise_level_max=1.0)
    with pytest.raises(ValueError, match="divergence_factor"):
        LangevinSampler(noise_level_max=1.0, noise_level_min=0.1, divergence_factor=10.0)
    with pytest.raises(ValueError, match="denoise_final"):
        LangevinSampler(denoise_final=True)
    conf = langevin_from_config({"steps": 4, "noise_level_max": "1.0e0", "noise_level_min": 0.1, "noise_levels": 2,
                                 "denoise_final": True})
    assert conf.annealed and conf.noise_levels == 2 and conf.denoise_final
    with pytest.raises(ValueError, match="denoise_final"):
        langevin_from_config({"noise_level_max": 1.0, "noise_level_min": 0.1, "denoise_final": "yes"})


def test_annealed_langevin_samples_the_smoothed_data_and_tweedie_lands_on_it():
    B, T, D = 2, 7, 3
    mu = torch.randn(B, T, D)
    init = mu + 3.0 * torch.randn(B, T, D)  # a hypothesis far off, as at the coarsest level
    lengths = torch.tensor([T, 5])
    text, tl = torch.ones(B, 2, dtype=torch.long), torch.full((B,), 2)
    energy = PointMassEnergy(mu)
    sampler = LangevinSampler(steps=60, step_size=0.2 * 0.05 ** 2, noise_level_max=3.0, noise_level_min=0.05,
                              noise_levels=6, max_abs=100.0, seed=0)
    res = sampler.run(energy, text, tl, init, lengths)
    valid = (torch.arange(T)[None, :] < lengths[:, None]).unsqueeze(-1)
    err = ((res.feats - mu) * valid).pow(2).sum() / (valid.sum() * D)
    assert 0.3 * 0.05 ** 2 < float(err) < 4 * 0.05 ** 2  # a sample of the finest smoothed density, not its mean
    assert energy.levels[0] == pytest.approx(3.0) and energy.levels[-1] == pytest.approx(0.05)
    assert float(res.feats[1, 5:].abs().sum()) == 0.0  # padding untouched
    tweedie = LangevinSampler(steps=60, step_size=0.2 * 0.05 ** 2, noise_level_max=3.0, noise_level_min=0.05,
                              noise_levels=6, max_abs=100.0, seed=0, denoise_final=True)
    out = tweedie.run(PointMassEnergy(mu), text, tl, init, lengths).feats
    assert torch.allclose(out * valid, mu * valid, atol=1e-5)
    plain = LangevinSampler(steps=2)
    with pytest.raises(ValueError, match="needs noise_level_max"):
        plain.run(energy, text, tl, init, lengths)
    with pytest.raises(ValueError, match="no noise input"):
        sampler.run(EnergyNetwork(**dict(TINY, odim=D)), text, tl, init, lengths)


def test_a_product_of_noise_conditional_experts_passes_the_level_and_refuses_a_mix():
    torch.manual_seed(0)
    a, b = EnergyNetwork(**TINY, noise_conditional=True), EnergyNetwork(**TINY, noise_conditional=True)
    text, tl, feats, fl = batch()
    poe = ProductOfExperts([a, b], [1.0, 0.5])
    assert poe.noise_conditional
    e, g = poe.energy_and_grad(text, tl, feats, fl, sigma=0.2)
    ea, ga = a.energy_and_grad(text, tl, feats, fl, sigma=0.2)
    eb, gb = b.energy_and_grad(text, tl, feats, fl, sigma=0.2)
    assert torch.allclose(e, ea + 0.5 * eb) and torch.allclose(g, ga + 0.5 * gb)
    with pytest.raises(ValueError, match="mix"):
        ProductOfExperts([a, EnergyNetwork(**TINY)], [1.0, 1.0])
    with torch.no_grad():
        assert math.isfinite(float(poe(text, tl, feats, fl, sigma=0.2).sum()))


def test_stage_6_decodes_a_noise_conditional_ebm_with_the_recipe_config_and_refuses_a_plain_one(tmp_path, capsys):
    """A tiny noise-conditional EBM built as stage 5 would (config.yaml + model.pth) goes through langevin_decode
    with the mini recipe's annealed decode config; the plain decode config is refused naming what to set."""
    with contextlib.redirect_stdout(io.StringIO()):  # espnet prints import notices on stdout
        from ebm.task import EBMTask
    stats = tmp_path / "feats_stats.npz"
    np.savez(stats, count=np.array(100), sum=np.full(8, -300.0), sum_square=np.full(8, 100 * 10.0))
    args = EBMTask.get_parser().parse_args([])
    args.token_list, args.token_type, args.cleaner, args.g2p = ["<blank>", "<unk>", *"abc ", "<sos/eos>"], "char", \
        None, None
    args.feats_extract_conf = dict(fs=8000, n_fft=128, hop_length=32, win_length=None, n_mels=8, fmin=0, fmax=4000)
    args.normalize_conf = dict(stats_file=str(stats))
    args.energy_network_conf = dict(adim=8, aheads=2, elayers=1, eunits=16, dlayers=1, dunits=16, prenet_layers=1,
                                    prenet_chans=8, head_units=8, noise_conditional=True)
    args.model_conf = dict(samplers=[], criteria=[{"name": "dsm", "conf": {"target": "score",
                                                                           "noise_conditional": True}}],
                           refine_noise_level=0.3)
    torch.manual_seed(0)
    torch.save(EBMTask.build_model(args).state_dict(), tmp_path / "model.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    (tmp_path / "text").write_text("u1 abc\nu2 cab a\n")
    with open(tmp_path / "feats.scp", "w") as f:
        for k, n in (("u1", 12), ("u2", 17)):
            np.save(tmp_path / f"{k}.npy", (np.random.default_rng(n).normal(size=(n, 8)) - 3).astype(np.float32))
            f.write(f"{k} {tmp_path / f'{k}.npy'}\n")

    def decode(config, out, *extra):
        argv = ["--model_file", str(tmp_path / "model.pth"), "--train_config", str(tmp_path / "config.yaml"),
                "--config", str(config), "--steps", "4", "--text", str(tmp_path / "text"),
                "--init_scp", str(tmp_path / "feats.scp"), "--output_dir", str(out), *extra]
        try:
            langevin_decode.run(langevin_decode.main, argv)
        except SystemExit as e:
            return e.code
        return 0

    conf_dir = Path(__file__).resolve().parents[1] / "egs/mini_espeak/tts1/conf"
    assert decode(conf_dir / "decode_ebm_annealed.yaml", tmp_path / "annealed") == 0
    settings = yaml.safe_load((tmp_path / "annealed/settings.yaml").read_text())
    assert settings["sampler"]["noise_level_max"] == 0.3 and settings["sampler"]["denoise_final"] is True
    init = np.load(tmp_path / "u2.npy")
    scp = dict(line.split() for line in (tmp_path / "annealed/denorm/feats.scp").read_text().splitlines())
    refined = np.load(scp["u2"])
    assert refined.shape == init.shape and np.isfinite(refined).all() and not np.allclose(refined, init)
    # stage 6's sweep over the starting level (--ebm_decode_noise_level_maxs) overrides the config's
    assert decode(conf_dir / "decode_ebm_annealed.yaml", tmp_path / "from02", "--noise_level_max", "0.2") == 0
    settings = yaml.safe_load((tmp_path / "from02/settings.yaml").read_text())
    assert settings["sampler"]["noise_level_max"] == 0.2 and settings["sampler"]["steps"] == 4
    capsys.readouterr()
    assert decode(conf_dir / "decode_ebm_score.yaml", tmp_path / "plain") != 0
    err = capsys.readouterr().err
    assert "noise-conditional" in err and "noise_level_max" in err and "decode_ebm_score.yaml" in err
    assert not (tmp_path / "plain/denorm/feats.scp").exists()
