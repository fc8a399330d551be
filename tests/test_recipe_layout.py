"""Every recipe has the shared pieces, and every link in egs/ resolves (a broken one only fails at run time)."""

import os

import pytest

from conftest import REPO

RECIPES = sorted(p.parent for p in (REPO / "egs").glob("*/tts1/run.sh") if p.parent.parent.name != "TEMPLATE")


def test_links_resolve():
    broken = [str(p.relative_to(REPO)) for p in (REPO / "egs").rglob("*")
              if p.is_symlink() and not p.exists() and not {"data", "dump", "exp", "downloads"} & set(p.parts)]
    assert broken == []


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.parent.name for r in RECIPES])
def test_recipe_has_the_shared_pieces(recipe):
    for name in ["run.sh", "local/data.sh", "tts.sh", "path.sh", "cmd.sh", "db.sh", "utils/run.pl",
                 "conf/slurm.conf", "conf/decode_tacotron2.yaml", "conf/decode_ebm.yaml"]:
        assert (recipe / name).exists(), f"{recipe.name}: {name}"
    for name in ["run.sh", "local/data.sh"]:
        assert os.access(recipe / name, os.X_OK), f"{recipe.name}: {name} is not executable"
    assert (recipe / "tts.sh").resolve() == (REPO / "egs/TEMPLATE/tts1/tts.sh")
    for opt in ["--train_config", "--inference_config", "--ebm_config", "--ebm_inference_config"]:
        value = (recipe / "run.sh").read_text().split(opt, 1)[1].split()[0]
        assert (recipe / value).is_file(), f"{recipe.name}: {opt} {value} does not exist"
