"""Stages 0-1 of egs/ljspeech/tts1 on a directory shaped like LJSpeech-1.1 (no download), in a temporary copy, and
the documented import of the model zoo's LJSpeech Tacotron 2 by name (refused at once offline)."""

import os
import shutil
import subprocess
import time

from conftest import REPO
from test_ljspeech_prep import make_corpus, thirty_lines
from test_recipe_mini import run_recipe


def copy_ljspeech(dst):
    for sub in ["egs/TEMPLATE", "egs/ljspeech", "utils"]:
        shutil.copytree(REPO / sub, dst / sub, symlinks=True,
                        ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads"))
    os.symlink(REPO / "tools", dst / "tools")
    return dst / "egs/ljspeech/tts1"


def test_existing_copy_is_used_and_split(tmp_path):
    recipe = copy_ljspeech(tmp_path / "tree")
    make_corpus(tmp_path / "corpora/LJSpeech-1.1", thirty_lines())
    proc = run_recipe(recipe, "--stage", "0", "--stop-stage", "1", "--db_root", str(tmp_path / "corpora"),
                      "--local_data_opts", "--num_dev 3 --num_eval 3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no download" in proc.stderr
    sizes = {s: len((recipe / "dump/raw" / s / "wav.scp").read_text().splitlines())
             for s in ["tr_no_dev", "dev", "eval1"]}
    assert sizes == {"tr_no_dev": 24, "dev": 3, "eval1": 3}
    assert not (recipe / "downloads").exists()


def test_directory_without_metadata_is_refused(tmp_path):
    recipe = copy_ljspeech(tmp_path / "tree")
    (tmp_path / "corpora/LJSpeech-1.1/wavs").mkdir(parents=True)
    proc = run_recipe(recipe, "--stage", "1", "--stop-stage", "1", "--db_root", str(tmp_path / "corpora"))
    assert proc.returncode != 0
    assert "metadata.csv" in proc.stderr
    assert not (recipe / "data/tr_no_dev").exists()


def test_zoo_model_by_name_offline_stops_at_once_suggesting_a_file(tmp_path):
    """run.sh's documented command (--baseline_model_tag kan-bayashi/ljspeech_tacotron2), offline: it stops before
    any stage, within seconds, suggesting --baseline_model_file; giving both options is refused."""
    recipe = copy_ljspeech(tmp_path / "tree")
    tag = ["--baseline_model_tag", "kan-bayashi/ljspeech_tacotron2"]
    assert " ".join(tag) in (recipe / "run.sh").read_text()  # the command its header documents
    closed = "http://127.0.0.1:9"  # nothing listens there: every request fails at once, as offline
    env = dict(os.environ, http_proxy=closed, https_proxy=closed, HTTP_PROXY=closed, HTTPS_PROXY=closed,
               no_proxy="", NO_PROXY="")
    t0 = time.time()
    proc = subprocess.run(["./run.sh", "--stage", "2", *tag], cwd=recipe, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and time.time() - t0 < 60
    assert "--baseline_model_tag kan-bayashi/ljspeech_tacotron2: no network" in proc.stderr
    assert "--baseline_model_file MODEL.zip" in proc.stderr and "Stage 2" not in proc.stderr
    proc = run_recipe(recipe, "--stage", "2", *tag, "--baseline_model_file", str(tmp_path / "x.zip"))
    assert proc.returncode != 0
    assert "give the baseline with --baseline_model_file or --baseline_model_tag (one of them)" in proc.stderr
