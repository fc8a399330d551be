"""Importing a packed ESPnet Tacotron 2 (the model zoo's layout) as the baseline, and g2p_en's NLTK data.

The models are tiny Tacotron 2s built with ESPnet's task and packed with ESPnet's packing code, as a recipe's pack
stage and the model zoo write them. Their token list is in an order the recipe's own data would never give (letters
Z to A), so a recipe that used its own list or its own statistics would decode something else than the model.
"""

import contextlib
import os
import subprocess
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf
import yaml

from conftest import REPO
from test_recipe_baseline import EBM, NO_LAMBDA_SWEEP
from test_recipe_mini import copy_tree, read_ids, run_recipe

TINY = ["--train_config", str(REPO / "tests/data/train_tacotron2_tiny.yaml"),
        "--inference_config", str(REPO / "tests/data/decode_tacotron2_short.yaml"),
        "--local_data_opts", "--num_dev 3 --num_eval 3", "--gv_scales", "", "--baseline_num_samples", "0"]
# mini_espeak's features (its run.sh): the models below are built on them unless a test changes one
FEATS = dict(fs=22050, n_fft=1024, hop_length=256, win_length=None, n_mels=80, fmin=40, fmax=7600)
TOKENS = (["<blank>", "<unk>"] + [chr(c) for c in range(ord("Z"), ord("A") - 1, -1)]
          + ["<space>"] + list("!'\"(),-.:;?") + ["<sos/eos>"])


@contextlib.contextmanager
def cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def build_packed_model(work, name, tokens=TOKENS, feats=FEATS):
    """A tiny Tacotron 2 in an ESPnet recipe's layout (config.yaml, weights, feats_stats.npz), packed by ESPnet's
    pack() as its recipes' pack stage does (``espnet2.bin.pack tts ... --option feats_stats.npz``)."""
    from espnet2.main_funcs.pack_funcs import pack
    from espnet2.tasks.tts import TTSTask

    root = work / name
    (root / "exp/tts_stats/train").mkdir(parents=True)
    (root / "exp/tts_tiny").mkdir(parents=True)
    (root / "tokens.txt").write_text("".join(f"{t}\n" for t in tokens))
    rng = np.random.default_rng(len(name))
    mean = -4.0 + rng.uniform(0, 1, feats["n_mels"])  # log10 mel: another corpus' statistics than the recipe's
    std = 0.8 + rng.uniform(0, 0.5, feats["n_mels"])
    count = 1000.0
    np.savez(root / "exp/tts_stats/train/feats_stats.npz", count=np.array(count), sum=mean * count,
             sum_square=(std ** 2 + mean ** 2) * count)
    with cwd(root):
        args = ["--config", str(REPO / "tests/data/train_tacotron2_tiny.yaml"), "--token_list", "tokens.txt",
                "--token_type", "char", "--cleaner", "tacotron", "--g2p", "none", "--feats_extract", "fbank",
                "--normalize", "global_mvn", "--normalize_conf", "stats_file=exp/tts_stats/train/feats_stats.npz",
                "--output_dir", "exp/tts_tiny"]
        args = TTSTask.get_parser().parse_args(args)
        args.feats_extract_conf = dict(feats)  # as a config file gives it (win_length: null, as the zoo's)
        import torch

        torch.manual_seed(0)
        model = TTSTask.build_model(args)
        torch.save(model.state_dict(), "exp/tts_tiny/valid.loss.ave.pth")
        with open("exp/tts_tiny/config.yaml", "w") as f:
            yaml.safe_dump(vars(args), f, sort_keys=False)
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            pack(files={"model_file": "exp/tts_tiny/valid.loss.ave.pth"},
                 yaml_files={"train_config": "exp/tts_tiny/config.yaml"},
                 option=["exp/tts_stats/train/feats_stats.npz"], outpath=str(work / f"{name}.zip"))
    return work / f"{name}.zip"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    work = tmp_path_factory.mktemp("zoo")
    other = dict(FEATS, n_mels=40, hop_length=200, fmax=8000, window="hamming")
    return {"good": build_packed_model(work, "good"),
            "no_comma": build_packed_model(work, "no_comma", tokens=[t for t in TOKENS if t != ","]),
            "other_feats": build_packed_model(work, "other_feats", feats=other)}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """Stages 0-1 of mini_espeak on 16 sentences (10 train, 3 dev, 3 eval): the data every import reads."""
    recipe = copy_tree(tmp_path_factory.mktemp("tree"))
    sentences = recipe / "local/sentences.txt"
    sentences.write_text("".join(sentences.read_text().splitlines(keepends=True)[:16]))
    proc = run_recipe(recipe, "--stage", "0", "--stop-stage", "1", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return recipe


@pytest.fixture(scope="module")
def imported(recipe, zoo):
    # --decode_batch_size 1: ESPnet's Text2Speech one utterance at a time, each reseeded, so that even the prenet
    # dropout of the free-running decodes is the model's own (batches draw their masks together)
    # Stages 5-7 as a user runs them after an import: the EBM learns from the imported model's decodes, and the
    # comparison is against that model
    proc = run_recipe(recipe, "--stage", "2", "--stop-stage", "7", *TINY, "--decode_batch_size", "1",
                      "--baseline_model_file", str(zoo["good"]), *EBM, "--ebm_args", "--max_epoch 1",
                      "--ebm_inference_config", str(REPO / "egs/mini_espeak/tts1/conf/decode_ebm.yaml"),
                      "--ebm_decode_steps", "1", *NO_LAMBDA_SWEEP, "--griffin_lim_iters", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return recipe, proc.stderr


def unpacked(zip_path, out):
    """The model as espnet_model_zoo hands it to ESPnet's own inference: unpacked, paths rewritten."""
    from espnet2.main_funcs.pack_funcs import unpack

    return unpack(zip_path, out)


def test_recipe_adopts_the_models_tokens_and_statistics(imported, zoo, tmp_path):
    recipe, log = imported
    tokens = (recipe / "dump/token_list/char/tokens.txt").read_text().splitlines()
    assert tokens == TOKENS
    train_chars = (recipe / "dump/raw/tr_no_dev/text").read_text().upper()
    assert max("ABCDEFGHIJKLMNOPQRSTUVWXYZ", key=train_chars.count) != "Z"  # its own list would not start with Z
    assert "the imported model's text front end" not in log  # the model's front end is the recipe's here
    config = yaml.safe_load((recipe / "exp/tts_imported/config.yaml").read_text())
    assert config["token_list"] == TOKENS
    files = unpacked(zoo["good"], tmp_path / "u")
    model_stats = yaml.safe_load(open(files["train_config"]))["normalize_conf"]["stats_file"]
    used = np.load(recipe / "exp/tts_stats_raw_char_tacotron/train/feats_stats.npz")
    want = np.load(model_stats)
    for key in ("sum", "sum_square", "count"):
        np.testing.assert_array_equal(used[key], want[key])
    own = np.load(recipe / "exp/tts_stats_raw_char_tacotron/train/feats_stats_collected.npz")
    assert abs(own["sum"] / own["count"] - want["sum"] / want["count"]).max() > 0.1
    # the shape files the EBM's sampler needs still come from this corpus
    assert len(read_ids(recipe / "exp/tts_stats_raw_char_tacotron/train/speech_shape")) == 10
    assert (recipe / "exp/tts_imported/train.loss.ave.pth").resolve() == (recipe / "exp/baseline_import/unpacked"
                                                                          / "exp/tts_tiny/valid.loss.ave.pth").resolve()


@pytest.mark.parametrize("mode", ["teacher_forced", "free_running"])
def test_decodes_match_the_models_own_inference(imported, zoo, tmp_path, mode, monkeypatch):
    """ESPnet's Text2Speech on the unpacked zoo model, seeded as stage 4 is: the same mel for every dev text."""
    import torch
    from espnet2.bin.tts_inference import Text2Speech
    from espnet2.fileio.npy_scp import NpyScpReader

    recipe, _ = imported
    files = unpacked(zoo["good"], tmp_path / "u")
    decode = yaml.safe_load((REPO / "tests/data/decode_tacotron2_short.yaml").read_text())
    t2s = Text2Speech(files["train_config"], files["model_file"], always_fix_seed=True, seed=0,
                      use_teacher_forcing=mode == "teacher_forced", **decode)
    monkeypatch.chdir(recipe)
    texts = dict(line.split(" ", 1) for line in (recipe / "dump/raw/dev/text").read_text().splitlines())
    wavs = dict(line.split(" ", 1) for line in (recipe / "dump/raw/dev/wav.scp").read_text().splitlines())
    for sub, key_out in (("norm", "feat_gen"), ("denorm", "feat_gen_denorm")):
        got = NpyScpReader(f"exp/tts_imported/decode_{mode}/dev/{sub}/feats.scp")
        assert sorted(got.keys()) == sorted(texts)
        for utt, text in texts.items():
            speech = None
            if mode == "teacher_forced":
                speech = torch.from_numpy(sf.read(wavs[utt], dtype="float32")[0])
            with torch.no_grad():
                want = t2s(text, speech=speech)[key_out].numpy()
            assert got[utt].shape == want.shape, (utt, sub)
            np.testing.assert_allclose(got[utt], want, atol=1e-4, err_msg=f"{utt} {sub}")


def test_the_ebm_is_trained_on_and_compared_with_the_imported_model(imported):
    """Stages 5-7 after the import: the EBM's training data are the imported model's decodes, its Langevin chains
    start from them, and RESULTS.md and the listening page compare it with that model."""
    recipe, _ = imported
    ebm = recipe / "exp/ebm_train_ebm_tiny"
    config = yaml.safe_load((ebm / "config.yaml").read_text())
    assert "exp/tts_imported/decode_teacher_forced/tr_no_dev" in str(config["train_data_path_and_name_and_type"])
    assert config["token_list"] == TOKENS  # the model's list, not one built from this corpus
    settings = yaml.safe_load((ebm / "decode_langevin_steps1_from_free_running/settings.yaml").read_text())
    assert settings["init"] == "free_running"
    md = (recipe / "RESULTS.md").read_text()
    assert "ebm_train_ebm_tiny" in md and "Tacotron 2** on 3 eval utterances" in md
    scores = recipe / "exp/tts_imported/decode_free_running/eval1/scores_griffin_lim.tsv"
    assert len(scores.read_text().splitlines()) == 1 + 3  # the Tacotron 2 row is the imported model's
    page = (recipe / "exp/results_griffin_lim/index.html").read_text()
    assert page.count("<audio") == 3 * 4  # recording, analysis-synthesis, Tacotron 2, the EBM per eval utterance
    assert page.count('src="../tts_imported/decode_free_running/eval1/') == 3  # its audio


def test_a_model_on_other_features_is_refused_naming_each_setting(recipe, zoo):
    proc = run_recipe(recipe, "--stage", "2", "--stop-stage", "2", *TINY, "--expdir", "exp_feats",
                      "--baseline_model_file", str(zoo["other_feats"]))
    assert proc.returncode != 0
    assert proc.stderr.count("ERROR:") == 1
    for line in ["feats_extract_conf.n_mels: baseline 40, recipe 80",
                 "feats_extract_conf.hop_length: baseline 200, recipe 256 (--n_shift)",
                 "feats_extract_conf.fmax: baseline 8000, recipe 7600",
                 "feats_extract_conf.window: baseline 'hamming', recipe 'hann'",
                 "--n_shift 200 --n_mels 40 --fmax 8000"]:
        assert line in proc.stderr, line
    assert "fs:" not in proc.stderr and "n_fft:" not in proc.stderr and "fmin:" not in proc.stderr
    assert not (recipe / "exp_feats/baseline_import/source").exists()
    assert not (recipe / "exp_feats/tts_stats_raw_char_tacotron").exists()


def test_a_transcript_outside_the_models_tokens_is_named(recipe, zoo):
    proc = run_recipe(recipe, "--stage", "2", "--stop-stage", "2", *TINY, "--expdir", "exp_comma",
                      "--baseline_model_file", str(zoo["no_comma"]))
    assert proc.returncode != 0
    with_comma, without = [], []
    for s in ["tr_no_dev", "dev", "eval1"]:
        for line in (recipe / "dump/raw" / s / "text").read_text().splitlines():
            (with_comma if "," in line else without).append(line.split()[0])
    assert with_comma and without
    named = [line for line in proc.stderr.splitlines() if "are not in the token list of the imported model" in line]
    assert sorted(line.split(": ")[1] for line in named) == sorted(with_comma)
    assert all("[',']" in line for line in named)
    assert f"{len(with_comma)} transcripts do not tokenise" in proc.stderr
    assert not (recipe / "exp_comma/tts_stats_raw_char_tacotron").exists()


def test_model_tag_offline_fails_at_once_suggesting_a_file(recipe):
    import importlib.util

    closed = "http://127.0.0.1:9"  # nothing listens: every request fails at once, as offline
    env = dict(os.environ, http_proxy=closed, https_proxy=closed, HTTP_PROXY=closed, HTTPS_PROXY=closed,
               no_proxy="", NO_PROXY="")
    t0 = time.time()
    proc = subprocess.run(["./run.sh", "--stage", "3", "--stop-stage", "3", *TINY, "--expdir", "exp_tag",
                           "--baseline_model_tag", "kan-bayashi/ljspeech_tacotron2"],
                          cwd=recipe, capture_output=True, text=True, env=env)
    elapsed = time.time() - t0
    assert proc.returncode != 0
    assert "--baseline_model_tag kan-bayashi/ljspeech_tacotron2: no network" in proc.stderr
    assert "--baseline_model_file MODEL.zip" in proc.stderr
    if importlib.util.find_spec("espnet_model_zoo") is None:
        assert "pip install espnet_model_zoo" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 60, elapsed  # the recipe's start and one Python process; no retries, no download
    assert not (recipe / "exp_tag/tts_imported").exists()


def test_packed_archive_needs_no_config_and_a_weights_file_does(tmp_path, zoo):
    """locate(): archive and unpacked directory carry their config; a bare .pth needs one, said in one line."""
    from ebm.baseline_import import locate
    from ebm.cli import EbmError

    cfg, pth = locate(str(zoo["good"]), unpack_dir=str(tmp_path / "a"))
    assert yaml.safe_load(open(cfg))["token_list"] == TOKENS and os.path.isfile(pth)
    with zipfile.ZipFile(zoo["good"]) as z:
        z.extractall(tmp_path / "by_hand")  # unzipped without ESPnet: the config's paths are still relative
    cfg2, pth2 = locate(str(tmp_path / "by_hand"))
    assert os.path.samefile(os.path.dirname(pth2), tmp_path / "by_hand/exp/tts_tiny")
    with pytest.raises(EbmError, match="give its config.yaml with --baseline_config"):
        locate(pth)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(EbmError, match="cannot be unpacked as an ESPnet model"):
        locate(str(tmp_path / "bad.zip"), unpack_dir=str(tmp_path / "b"))


# ------------------------------------------------------------------------------------------------------- g2p_en
def fake_nltk_data(root):
    """The two NLTK resources g2p_en reads, in NLTK's layout (zip and unpacked), with a three-word dictionary:
    other words go through g2p_en's own neural model, which it ships."""
    def put(rel, files):
        d = root / rel
        d.mkdir(parents=True)
        with zipfile.ZipFile(f"{d}.zip", "w") as z:
            for name, text in files.items():
                (d / name).write_text(text)
                z.writestr(f"{d.name}/{name}", text)
    put("corpora/cmudict", {"cmudict": "HELLO  1  HH AH0 L OW1\nWORLD  1  W ER1 L D\nTHE  1  DH AH0\n"})
    n = "averaged_perceptron_tagger_eng"
    put(f"taggers/{n}", {f"{n}.weights.json": "{}", f"{n}.tagdict.json": "{}", f"{n}.classes.json": '["NN"]'})
    return root


def test_g2p_en_without_nltk_data_says_what_to_install(tmp_path, monkeypatch):
    import nltk

    from ebm.bin.check_g2p import main
    from ebm.cli import EbmError

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(EbmError) as e:
        main(["--g2p", "g2p_en"])
    message = str(e.value)
    assert "corpora/cmudict, taggers/averaged_perceptron_tagger_eng" in message
    assert "python -m nltk.downloader -d tools/venv/nltk_data cmudict averaged_perceptron_tagger_eng" in message
    main(["--g2p", "espeak_ng_english_us_vits"])  # needs no NLTK data
    fake_nltk_data(tmp_path)
    main(["--g2p", "g2p_en"])


def test_recipe_with_g2p_en_runs_when_its_data_is_installed(recipe, tmp_path):
    """g2p_en_no_space: the variant ESPnet's LJSpeech models use (plain g2p_en makes " " a token of its own)."""
    env = dict(os.environ, NLTK_DATA=str(fake_nltk_data(tmp_path / "nltk_data")))
    proc = subprocess.run(["./run.sh", "--stage", "2", "--stop-stage", "2", *TINY, "--expdir", "exp_g2p",
                           "--token_type", "phn", "--g2p", "g2p_en_no_space",
                           # 10 training texts lack phonemes of the held-out ones: score on the training set
                           "--dev_set", "tr_no_dev", "--eval_sets", "tr_no_dev"],
                          cwd=recipe, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "g2p g2p_en_no_space: its data is installed" in proc.stderr
    tokens = (recipe / "dump/token_list/phn_g2p_en_no_space/tokens.txt").read_text().splitlines()
    assert {"AH0", "DH"} <= set(tokens) and "A" not in tokens
    assert (recipe / "exp_g2p/tts_stats_raw_phn_g2p_en_no_space_tacotron/train/feats_stats.npz").is_file()
