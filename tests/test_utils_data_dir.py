"""Tests for the data-directory helpers in utils/."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "utils"

UTT2SPK = {
    "spkA-u1": "spkA",
    "spkA-u2": "spkA",
    "spkA-u3": "spkA",
    "spkB-u1": "spkB",
    "spkC-u1": "spkC",
    "spkC-u2": "spkC",
}


def sh(tool, *args, cwd=None, stdin=None):
    return subprocess.run(
        [str(UTILS / tool), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        timeout=60,
    )


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def read(path):
    return path.read_text().splitlines()


def make_data_dir(path, utt2spk=UTT2SPK, prefix=""):
    path.mkdir(parents=True)
    utts = sorted(prefix + u for u in utt2spk)
    write(path / "wav.scp", [f"{u} /corpus/{u}.wav" for u in utts])
    write(path / "text", [f"{u} transcript of {u}" for u in utts])
    write(path / "utt2spk", [f"{prefix}{u} {s}" for u, s in sorted(utt2spk.items())])
    spk2utt = {}
    for u, s in sorted(utt2spk.items()):
        spk2utt.setdefault(s, []).append(prefix + u)
    write(path / "spk2utt", [" ".join([s, *us]) for s, us in sorted(spk2utt.items())])
    return path


@pytest.fixture
def data(tmp_path):
    return make_data_dir(tmp_path / "data")


# --------------------------------------------------------------- split_scp


def test_split_scp_equal_chunks(tmp_path):
    lines = [f"utt{i:02d} /x/{i}.wav" for i in range(10)]
    write(tmp_path / "in.scp", lines)
    outs = [tmp_path / f"out{i}.scp" for i in range(3)]
    proc = sh("split_scp.pl", tmp_path / "in.scp", *outs)
    assert proc.returncode == 0, proc.stderr
    parts = [read(o) for o in outs]
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sum(parts, []) == lines  # contiguous, in order, complete


def test_split_scp_more_outputs_than_lines(tmp_path):
    write(tmp_path / "in.scp", ["a 1", "b 2"])
    outs = [tmp_path / f"o{i}" for i in range(3)]
    proc = sh("split_scp.pl", tmp_path / "in.scp", *outs)
    assert proc.returncode != 0
    assert "3" in proc.stderr


def test_split_scp_utt2spk_keeps_speakers_together(tmp_path):
    spk_sizes = {"s1": 3, "s2": 1, "s3": 2, "s4": 2, "s5": 4}
    utt2spk = []
    for s, n in spk_sizes.items():
        utt2spk += [f"{s}_{j} {s}" for j in range(n)]
    write(tmp_path / "utt2spk", utt2spk)
    lines = [f"{line.split()[0]} data" for line in utt2spk]
    write(tmp_path / "in.scp", lines)
    outs = [tmp_path / f"o{i}" for i in range(3)]
    proc = sh("split_scp.pl", "--utt2spk", tmp_path / "utt2spk", tmp_path / "in.scp", *outs)
    assert proc.returncode == 0, proc.stderr
    parts = [read(o) for o in outs]
    assert sum(parts, []) == lines
    assert all(parts)
    owner = {}
    for i, part in enumerate(parts):
        for line in part:
            spk = line.split("_")[0]
            assert owner.setdefault(spk, i) == i, f"speaker {spk} split"
    # 12 lines in 3 parts: whole speakers allow an exact 4 / 4 / 4 split
    assert [len(p) for p in parts] == [4, 4, 4]


def test_split_scp_utt2spk_too_few_speakers(tmp_path):
    write(tmp_path / "utt2spk", ["a1 a", "a2 a", "b1 b"])
    write(tmp_path / "in.scp", ["a1 x", "a2 x", "b1 x"])
    outs = [tmp_path / f"o{i}" for i in range(3)]
    proc = sh("split_scp.pl", "--utt2spk", tmp_path / "utt2spk", tmp_path / "in.scp", *outs)
    assert proc.returncode != 0
    assert "speakers" in proc.stderr


# --------------------------------------------------------------- spk2utt


def test_utt2spk_spk2utt_roundtrip(tmp_path, data):
    proc = sh("utt2spk_to_spk2utt.pl", data / "utt2spk")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == read(data / "spk2utt")
    back = sh("spk2utt_to_utt2spk.pl", stdin=proc.stdout)
    assert back.returncode == 0, back.stderr
    assert back.stdout.splitlines() == read(data / "utt2spk")


def test_utt2spk_to_spk2utt_from_stdin_keeps_order():
    proc = sh("utt2spk_to_spk2utt.pl", stdin="u3 b\nu1 a\nu2 b\n")
    assert proc.stdout.splitlines() == ["b u3 u2", "a u1"]


# --------------------------------------------------------------- filter_scp


@pytest.fixture
def scp(tmp_path):
    write(tmp_path / "ids", ["u2", "u4 extra columns", ""])
    write(tmp_path / "in", ["u1 s1 x", "u2 s1 y", "u3 u4 z", "u4 s2 w"])
    return tmp_path


def test_filter_scp_include(scp):
    proc = sh("filter_scp.pl", scp / "ids", scp / "in")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["u2 s1 y", "u4 s2 w"]


def test_filter_scp_exclude(scp):
    proc = sh("filter_scp.pl", "--exclude", scp / "ids", scp / "in")
    assert proc.stdout.splitlines() == ["u1 s1 x", "u3 u4 z"]


def test_filter_scp_field(scp):
    proc = sh("filter_scp.pl", "-f", "2", scp / "ids", stdin=(scp / "in").read_text())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["u3 u4 z"]


def test_filter_scp_usage():
    proc = sh("filter_scp.pl")
    assert proc.returncode != 0
    assert "Usage" in proc.stderr


# --------------------------------------------------------------- validate


def validate(data, *opts):
    return sh("validate_data_dir.sh", *opts, data)


def test_validate_good_dir(data):
    proc = validate(data)
    assert proc.returncode == 0, proc.stderr
    assert f"validate_data_dir.sh: {data} is OK" in proc.stdout


def _unsorted(d):
    lines = read(d / "wav.scp")
    lines[0], lines[1] = lines[1], lines[0]
    write(d / "wav.scp", lines)


def _missing_text(d):
    write(d / "text", [l for l in read(d / "text") if not l.startswith("spkB-u1")])


def _empty_transcript(d):
    write(d / "text", [("spkB-u1" if l.startswith("spkB-u1") else l) for l in read(d / "text")])


def _duplicate(d):
    lines = read(d / "utt2spk")
    write(d / "utt2spk", lines[:3] + [lines[2]] + lines[3:])


def _blank_line(d):
    lines = read(d / "text")
    write(d / "text", lines[:2] + [""] + lines[2:])


def _spk2utt_mismatch(d):
    write(d / "spk2utt", [l.replace("spkC-u2", "") for l in read(d / "spk2utt")])


def _no_spk2utt(d):
    (d / "spk2utt").unlink()


def _whitespace_id(d):
    lines = read(d / "wav.scp")
    lines[-1] = " " + lines[-1]
    write(d / "wav.scp", lines)


def _extra_wav(d):
    write(d / "wav.scp", read(d / "wav.scp") + ["zzz-extra /corpus/extra.wav"])


BROKEN = {
    "unsorted": (_unsorted, "wav.scp", "spkA-u1", "sorted"),
    "missing_text": (_missing_text, "text", "spkB-u1", "missing"),
    "empty_transcript": (_empty_transcript, "text", "spkB-u1", "empty transcript"),
    "duplicate": (_duplicate, "utt2spk", "spkA-u3", "duplicate"),
    "blank_line": (_blank_line, "text", "line 3", "empty"),
    "spk2utt_mismatch": (_spk2utt_mismatch, "spk2utt", "spkC-u2", "spk2utt"),
    "no_spk2utt": (_no_spk2utt, "spk2utt", "spk2utt", "does not exist"),
    "whitespace_id": (_whitespace_id, "wav.scp", "line 6", "whitespace"),
    "extra_wav": (_extra_wav, "wav.scp", "zzz-extra", "not in"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_validate_broken_dirs(data, kind):
    breaker, fname, offender, words = BROKEN[kind]
    breaker(data)
    proc = validate(data)
    assert proc.returncode == 1
    err_lines = [l for l in proc.stderr.splitlines() if "ERROR" in l]
    assert err_lines, proc.stderr
    hits = [l for l in err_lines if f"{data}/{fname}" in l and offender in l and words in l]
    assert hits, proc.stderr
    assert all(f"utils/fix_data_dir.sh {data}" in l for l in err_lines)
    assert "is OK" not in proc.stdout


def test_validate_no_text(data):
    (data / "text").unlink()
    assert validate(data).returncode == 1
    proc = validate(data, "--no-text")
    assert proc.returncode == 0, proc.stderr


def test_validate_feats_checked_unless_no_feats(data):
    write(data / "feats.scp", ["spkA-u1 feats.ark:10"])
    proc = validate(data)
    assert proc.returncode == 1
    assert f"{data}/feats.scp" in proc.stderr
    assert validate(data, "--no-feats").returncode == 0


def test_validate_usage():
    proc = sh("validate_data_dir.sh")
    assert proc.returncode != 0
    assert "Usage" in proc.stderr


# --------------------------------------------------------------- fix


def test_fix_data_dir_repairs_broken_dir(data):
    original_text = (data / "text").read_text()
    # unsorted wav.scp, an id missing from text, an empty transcript,
    # an utt2spk entry with no audio, a stale spk2utt
    wav = read(data / "wav.scp")
    write(data / "wav.scp", list(reversed(wav)) + [""])
    text = [l for l in read(data / "text") if not l.startswith("spkA-u2")]
    text = [("spkC-u1 " if l.startswith("spkC-u1") else l) for l in text]
    write(data / "text", text)
    write(data / "utt2spk", read(data / "utt2spk") + ["zz-noaudio zz"])
    write(data / "spk2utt", ["spkA spkA-u1"])
    broken_text = (data / "text").read_text()
    assert validate(data).returncode == 1

    proc = sh("fix_data_dir.sh", data)
    assert proc.returncode == 0, proc.stderr
    assert f"{data}/text" in proc.stderr and "spkA-u2" in proc.stderr
    assert "empty transcript" in proc.stderr and "spkC-u1" in proc.stderr
    assert f"{data}/wav.scp" in proc.stderr and "zz-noaudio" in proc.stderr
    assert "kept 4 of 7" in proc.stderr

    kept = ["spkA-u1", "spkA-u3", "spkB-u1", "spkC-u2"]
    assert [l.split()[0] for l in read(data / "wav.scp")] == kept
    assert [l.split()[0] for l in read(data / "text")] == kept
    assert read(data / "utt2spk") == [f"{u} {UTT2SPK[u]}" for u in kept]
    assert read(data / "spk2utt") == ["spkA spkA-u1 spkA-u3", "spkB spkB-u1", "spkC spkC-u2"]
    assert read(data / "text")[0] == "spkA-u1 transcript of spkA-u1"

    # backups of the originals
    assert read(data / ".backup" / "spk2utt") == ["spkA spkA-u1"]
    assert "zz-noaudio zz" in read(data / ".backup" / "utt2spk")
    assert (data / ".backup" / "text").read_text() == broken_text != original_text
    # no temporary files left behind
    assert sorted(p.name for p in data.iterdir()) == [".backup", "spk2utt", "text", "utt2spk", "wav.scp"]

    proc = validate(data)
    assert proc.returncode == 0, proc.stderr


def test_fix_data_dir_optional_files_and_duplicates(data):
    write(data / "utt2dur", [f"{u} 1.5" for u in sorted(UTT2SPK) if u != "spkB-u1"])
    lines = read(data / "text")
    write(data / "text", lines + [lines[0].replace("transcript", "other")])
    proc = sh("fix_data_dir.sh", data)
    assert proc.returncode == 0, proc.stderr
    assert f"{data}/utt2dur" in proc.stderr and "spkB-u1" in proc.stderr
    ids = [l.split()[0] for l in read(data / "text")]
    assert ids == sorted(u for u in UTT2SPK if u != "spkB-u1")
    assert read(data / "text")[0] == "spkA-u1 transcript of spkA-u1"
    assert validate(data).returncode == 0


def test_fix_data_dir_with_segments(data):
    utts = sorted(UTT2SPK)
    write(data / "wav.scp", ["rec1 /corpus/rec1.wav", "rec2 /corpus/rec2.wav", "rec3 /c/r3.wav"])
    write(data / "segments", [f"{u} {'rec1' if i < 3 else 'rec9'} {i}.0 {i}.5" for i, u in enumerate(utts)])
    proc = sh("fix_data_dir.sh", data)
    assert proc.returncode == 0, proc.stderr
    assert read(data / "wav.scp") == ["rec1 /corpus/rec1.wav"]
    assert [l.split()[0] for l in read(data / "utt2spk")] == utts[:3]
    assert validate(data).returncode == 0


def test_fix_data_dir_refuses_to_empty_dir(data):
    write(data / "text", ["nobody hello"])
    before = (data / "wav.scp").read_text()
    proc = sh("fix_data_dir.sh", data)
    assert proc.returncode == 1
    assert (data / "wav.scp").read_text() == before


def test_fix_data_dir_usage(tmp_path):
    assert "Usage" in sh("fix_data_dir.sh").stderr
    proc = sh("fix_data_dir.sh", tmp_path / "nope")
    assert proc.returncode != 0


# --------------------------------------------------------------- copy/subset/combine


def test_copy_data_dir_with_prefix_and_suffix(tmp_path, data):
    dest = tmp_path / "copy"
    proc = sh("copy_data_dir.sh", "--utt-prefix", "sp0.9-", "--utt-suffix", "_x", data, dest)
    assert proc.returncode == 0, proc.stderr
    ids = [l.split()[0] for l in read(dest / "utt2spk")]
    assert ids == sorted(f"sp0.9-{u}_x" for u in UTT2SPK)
    assert read(dest / "text")[0] == "sp0.9-spkA-u1_x transcript of spkA-u1"
    assert "sp0.9-spkC-u1_x sp0.9-spkC-u2_x" in (dest / "spk2utt").read_text()
    assert validate(dest).returncode == 0


def test_copy_data_dir_usage(tmp_path, data):
    proc = sh("copy_data_dir.sh", data)
    assert proc.returncode != 0 and "Usage" in proc.stderr
    proc = sh("copy_data_dir.sh", "--utt-prefx", "a", data, tmp_path / "x")
    assert proc.returncode != 0 and "--utt-prefx" in proc.stderr


@pytest.mark.parametrize(
    "opts, expected",
    [
        (["--first", "2"], ["spkA-u1", "spkA-u2"]),
        (["--last", "3"], ["spkB-u1", "spkC-u1", "spkC-u2"]),
    ],
)
def test_subset_first_last(tmp_path, data, opts, expected):
    dest = tmp_path / "sub"
    proc = sh("subset_data_dir.sh", *opts, data, dest)
    assert proc.returncode == 0, proc.stderr
    for f in ("utt2spk", "text", "wav.scp"):
        assert [l.split()[0] for l in read(dest / f)] == expected
    assert validate(dest).returncode == 0


def test_subset_utt_list(tmp_path, data):
    write(tmp_path / "list", ["spkC-u2", "spkA-u3", "not-there"])
    dest = tmp_path / "sub"
    proc = sh("subset_data_dir.sh", "--utt-list", tmp_path / "list", data, dest)
    assert proc.returncode == 0, proc.stderr
    assert read(dest / "spk2utt") == ["spkA spkA-u3", "spkC spkC-u2"]
    assert validate(dest).returncode == 0


def test_subset_errors(tmp_path, data):
    assert sh("subset_data_dir.sh", "--first", "99", data, tmp_path / "s").returncode != 0
    proc = sh("subset_data_dir.sh", data, tmp_path / "s")
    assert proc.returncode != 0 and "Usage" in proc.stderr


def test_combine_data(tmp_path, data):
    other = make_data_dir(tmp_path / "other", {"spkD-u1": "spkD", "spkA-u9": "spkA"})
    dest = tmp_path / "all"
    proc = sh("combine_data.sh", dest, data, other)
    assert proc.returncode == 0, proc.stderr
    ids = [l.split()[0] for l in read(dest / "utt2spk")]
    assert ids == sorted(list(UTT2SPK) + ["spkD-u1", "spkA-u9"])
    assert read(dest / "spk2utt")[0] == "spkA spkA-u1 spkA-u2 spkA-u3 spkA-u9"
    assert validate(dest).returncode == 0


def test_combine_data_duplicate_ids(tmp_path, data):
    other = make_data_dir(tmp_path / "other", {"spkB-u1": "spkB"})
    proc = sh("combine_data.sh", tmp_path / "all", data, other)
    assert proc.returncode != 0
    assert "spkB-u1" in proc.stderr


def test_scripts_are_executable_with_usage_header():
    names = [
        "parse_options.sh", "run.pl", "slurm.pl", "split_scp.pl", "utt2spk_to_spk2utt.pl",
        "spk2utt_to_utt2spk.pl", "filter_scp.pl", "fix_data_dir.sh", "validate_data_dir.sh",
        "copy_data_dir.sh", "subset_data_dir.sh", "combine_data.sh",
    ]
    for name in names:
        path = UTILS / name
        assert path.stat().st_mode & 0o111, name
        head = path.read_text().splitlines()[:6]
        assert any("Usage" in l or "Usage:" in l for l in path.read_text().splitlines()[:12]), name
        assert head[0].startswith("#!"), name
