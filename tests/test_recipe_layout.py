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
                 "conf/slurm.conf", "conf/decode_tacotron2.yaml", "conf/decode_ebm.yaml", "search.sh",
                 "conf/search.txt"]:
        assert (recipe / name).exists(), f"{recipe.name}: {name}"
    for name in ["run.sh", "local/data.sh"]:
        assert os.access(recipe / name, os.X_OK), f"{recipe.name}: {name} is not executable"
    assert (recipe / "tts.sh").resolve() == (REPO / "egs/TEMPLATE/tts1/tts.sh")
    assert (recipe / "search.sh").resolve() == (REPO / "egs/TEMPLATE/tts1/search.sh")
    for opt in ["--train_config", "--inference_config", "--ebm_config", "--ebm_inference_config"]:
        value = (recipe / "run.sh").read_text().split(opt, 1)[1].split()[0]
        assert (recipe / value).is_file(), f"{recipe.name}: {opt} {value} does not exist"


GRIDS = sorted(g for r in RECIPES for g in (r / "conf").glob("search*.txt"))


def test_every_recipe_has_a_search_grid():
    assert {g.parent.parent for g in GRIDS if g.name == "search.txt"} == set(RECIPES)


@pytest.mark.parametrize("grid", GRIDS, ids=[f"{g.parent.parent.parent.name}/{g.name}" for g in GRIDS])
def test_search_grid_names_existing_configs(grid):
    """Each line of a grid (conf/search.txt, ./search.sh's default, and any conf/search_*.txt): train config, decode
    config, then steps, lambdas and sigmas as number lists (or `config`); optional drift_min_bin=LIST (mel bin
    indices) and noise_level_max=LIST (an annealed decode config's starting levels); an optional last field composes
    experts whose configs exist and are trained by an earlier line."""
    recipe = grid.parent.parent
    lines = [line.split() for line in grid.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines, f"{grid}: empty search grid"
    for n, fields in enumerate(lines):
        assert not [f for f in fields if f.startswith("minbin=")], f"{recipe.name}: the old name, say drift_min_bin="
        for extra in [f for f in fields[5:] if f.startswith("drift_min_bin=")]:
            assert all(0 <= int(v) < 80 for v in extra[len("drift_min_bin="):].split(",")), f"{recipe.name}: {fields}"
            fields.remove(extra)
        for extra in [f for f in fields[5:] if f.startswith("noise_level_max=")]:
            assert all(float(v) > 0 for v in extra[len("noise_level_max="):].split(",")), f"{recipe.name}: {fields}"
            assert "noise_level_max" in (recipe / fields[1]).read_text(), f"{recipe.name}: {fields[1]} is not annealed"
            fields.remove(extra)
        assert len(fields) in (5, 6), f"{recipe.name}: {fields}"
        assert (recipe / fields[0]).is_file() and (recipe / fields[1]).is_file(), f"{recipe.name}: {fields}"
        for values in fields[2:5]:  # number lists, or `config`: the decode config's value
            [float(v) for v in values.split(",") if values != "config"]
        if len(fields) == 6:
            own, *experts = fields[5].split("+")
            assert float(own) > 0 and experts, f"{recipe.name}: {fields}"
            for item in experts:
                config, weight = item.rsplit(":", 1)
                assert float(weight) > 0 and (recipe / config).is_file(), f"{recipe.name}: {fields}"
                assert any(f[0] == config for f in lines[:n]), f"{recipe.name}: {config} is not trained before"


def test_a_recipe_under_test_does_not_install_the_environment(tmp_path):
    """path.sh installs tools/venv on first use, except where EBM_NO_INSTALL is set (conftest sets it): a test tree
    without the environment stops at once with the fix, and its installer is never called."""
    import shutil
    import subprocess

    for sub in ["egs/TEMPLATE", "egs/mini_espeak", "utils"]:
        shutil.copytree(REPO / sub, tmp_path / sub, symlinks=True,
                        ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads", "__pycache__"))
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools/install.sh").write_text(f"#!/bin/sh\ntouch {tmp_path}/installer_ran\n")
    (tmp_path / "tools/install.sh").chmod(0o755)
    assert os.environ.get("EBM_NO_INSTALL")
    proc = subprocess.run(["./run.sh", "--stage", "0", "--stop-stage", "0"], cwd=tmp_path / "egs/mini_espeak/tts1",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "tools/venv is not installed and EBM_NO_INSTALL is set: run tools/install.sh" in proc.stderr
    assert not (tmp_path / "installer_ran").exists() and not (tmp_path / "tools/venv").exists()
    assert not (tmp_path / "egs/mini_espeak/tts1/data").exists()
