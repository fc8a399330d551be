"""Tests for utils/parse_options.sh (sourced by a small bash script)."""

import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARSE_OPTIONS = REPO / "utils" / "parse_options.sh"

SCRIPT = """#!/usr/bin/env bash
{pre}
stage=1
stop_stage=100
use_gpu=false
name="default name"
empty=
{help}
. {parse}
echo "stage=$stage"
echo "stop_stage=$stop_stage"
echo "use_gpu=$use_gpu"
echo "name=$name"
echo "empty=$empty"
echo "nargs=$#"
for a in "$@"; do echo "arg=$a"; done
"""


@pytest.fixture
def run_opts(tmp_path):
    def run(*args, pre="", help_message="Usage: s.sh [options] <in> <out>"):
        help_line = f"help_message={shlex.quote(help_message)}" if help_message else ""
        script = tmp_path / "s.sh"
        script.write_text(
            SCRIPT.format(pre=pre, help=help_line, parse=shlex.quote(str(PARSE_OPTIONS)))
        )
        return subprocess.run(
            ["bash", str(script), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=30,
        )

    return run


def values(proc):
    out = {}
    args = []
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "arg":
            args.append(value)
        else:
            out[key] = value
    return out, args


def test_defaults_without_options(run_opts):
    proc = run_opts()
    assert proc.returncode == 0, proc.stderr
    vals, args = values(proc)
    assert vals["stage"] == "1"
    assert vals["stop_stage"] == "100"
    assert vals["name"] == "default name"
    assert args == []


def test_dash_becomes_underscore(run_opts):
    proc = run_opts("--stop-stage", "3")
    assert proc.returncode == 0, proc.stderr
    vals, _ = values(proc)
    assert vals["stop_stage"] == "3"
    assert vals["stage"] == "1"


def test_equals_form_and_values_with_spaces(run_opts):
    proc = run_opts("--stage=5", "--name=a b  c", "--stop-stage=")
    assert proc.returncode == 0, proc.stderr
    vals, _ = values(proc)
    assert vals["stage"] == "5"
    assert vals["name"] == "a b  c"
    assert vals["stop_stage"] == ""


def test_value_with_spaces_and_leading_dash(run_opts):
    proc = run_opts("--name", "x  y", "--stage", "-2", "--empty", "now set")
    assert proc.returncode == 0, proc.stderr
    vals, _ = values(proc)
    assert vals["name"] == "x  y"
    assert vals["stage"] == "-2"
    assert vals["empty"] == "now set"


def test_unknown_option_is_an_error(run_opts):
    proc = run_opts("--stage", "2", "--no-such-thing", "1", "pos")
    assert proc.returncode == 1
    assert "--no-such-thing" in proc.stderr
    assert "stage=" not in proc.stdout  # the script stopped


def test_missing_value_is_an_error(run_opts):
    proc = run_opts("--stage")
    assert proc.returncode == 1
    assert "--stage" in proc.stderr


def test_boolean_accepts_true_false(run_opts):
    proc = run_opts("--use-gpu", "true")
    assert proc.returncode == 0, proc.stderr
    assert values(proc)[0]["use_gpu"] == "true"


@pytest.mark.parametrize("bad", ["yes", "1", "True", ""])
def test_boolean_rejects_other_values(run_opts, bad):
    proc = run_opts("--use-gpu", bad)
    assert proc.returncode == 1
    assert "--use-gpu" in proc.stderr
    assert "true or false" in proc.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_help_message(run_opts, flag):
    proc = run_opts("--stage", "3", flag, help_message="Usage: s.sh [options] <in> <out>\n  --stage N")
    assert proc.returncode == 0
    assert "Usage: s.sh [options] <in> <out>" in proc.stdout
    assert "--stage N" in proc.stdout
    assert "stage=" not in proc.stdout  # exited before the script body


def test_help_without_help_message_exits_zero(run_opts):
    proc = run_opts("--help", help_message="")
    assert proc.returncode == 0
    assert "stage=" not in proc.stdout


def test_config_file_is_sourced(run_opts, tmp_path):
    conf = tmp_path / "my.conf"
    conf.write_text("stage=7\nname='from config'\n")
    proc = run_opts("--config", str(conf))
    assert proc.returncode == 0, proc.stderr
    vals, _ = values(proc)
    assert vals["stage"] == "7"
    assert vals["name"] == "from config"


@pytest.mark.parametrize("order", ["config_first", "config_last"])
def test_command_line_overrides_config(run_opts, tmp_path, order):
    conf = tmp_path / "my.conf"
    conf.write_text("stage=7\nname=conf\n")
    if order == "config_first":
        args = ["--config", str(conf), "--name", "cli"]
    else:
        args = ["--name", "cli", f"--config={conf}"]
    proc = run_opts(*args)
    assert proc.returncode == 0, proc.stderr
    vals, _ = values(proc)
    assert vals["stage"] == "7"
    assert vals["name"] == "cli"


def test_missing_config_file_is_an_error(run_opts, tmp_path):
    proc = run_opts("--config", str(tmp_path / "nope.conf"))
    assert proc.returncode == 1
    assert "nope.conf" in proc.stderr


def test_positional_args_are_left(run_opts):
    proc = run_opts("--stage", "2", "in dir", "out", "--stop-stage", "4")
    assert proc.returncode == 0, proc.stderr
    vals, args = values(proc)
    assert vals["stage"] == "2"
    assert vals["stop_stage"] == "100"  # parsing stopped at "in dir"
    assert vals["nargs"] == "4"
    assert args == ["in dir", "out", "--stop-stage", "4"]


def test_double_dash_ends_options(run_opts):
    proc = run_opts("--stage", "2", "--", "--stop-stage", "4")
    assert proc.returncode == 0, proc.stderr
    vals, args = values(proc)
    assert vals["stop_stage"] == "100"
    assert args == ["--stop-stage", "4"]


def test_works_under_set_eu(run_opts):
    proc = run_opts("--stop-stage", "9", "x", pre="set -euo pipefail")
    assert proc.returncode == 0, proc.stderr
    vals, args = values(proc)
    assert vals["stop_stage"] == "9"
    assert args == ["x"]
