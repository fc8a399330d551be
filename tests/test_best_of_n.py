"""ebm.bin.best_of_n on three made-up decodes of four texts: the oracle takes each text's best decode, the medoid
avoids the outlying decode, the energy choice compares energies per frame, and mismatched inputs are refused."""

import numpy as np
import pytest

from ebm.bin import best_of_n
from ebm.cli import EbmError
from ebm.scoring import COLUMNS

KEYS = ["u1", "u2", "u3", "u4"]
MCD = np.array([[10.0, 9.0, 12.0], [11.0, 12.0, 8.0], [9.5, 9.0, 9.2], [10.0, 10.5, 11.0]])
FRAMES = [10, 4, 10]


def write_decode(tmp_path, j, mcd, offset, frames):
    d = tmp_path / f"decode{j}"
    d.mkdir()
    rows = ["utt\t" + "\t".join(COLUMNS)]
    scp = []
    base = np.linspace(-4, 0, 5 * 8).reshape(5, 8)
    for i, key in enumerate(KEYS):
        values = {c: 0.5 for c in COLUMNS}
        values.update(mcd=mcd[i], mel_distance=mcd[i] / 2, predicted_mos=5 - mcd[i] / 4)
        rows.append(key + "\t" + "\t".join(f"{values[c]:.5f}" for c in COLUMNS))
        mel = np.resize(base, (frames, 8)) + offset
        np.save(d / f"{key}.npy", mel)
        scp.append(f"{key} {d / f'{key}.npy'}")
    (d / "scores.tsv").write_text("\n".join(rows) + "\n")
    (d / "feats.scp").write_text("\n".join(scp) + "\n")
    return [f"d{j}", str(d / "scores.tsv"), str(d / "feats.scp")]


@pytest.fixture
def decodes(tmp_path):
    # decode 2's mels lie far from the others', decode 1's a little above decode 0's: the medoid is decode 1
    return [write_decode(tmp_path, j, MCD[:, j], off, FRAMES[j]) for j, off in enumerate([0.0, 0.1, 5.0])]


def energy_file(tmp_path, j, values):
    path = tmp_path / f"energy{j}"
    path.write_text("".join(f"{k} {v} {v - 1}\n" for k, v in zip(KEYS, values)))
    return str(path)


def test_choices(decodes, tmp_path):
    # sums -100 over 10 frames, -60 over 4, -110 over 10: per frame decode 1 is lowest although its sum is not
    energies = [energy_file(tmp_path, j, [e] * 4) for j, e in enumerate([-100.0, -60.0, -110.0])]
    keys, values, picks, extra = best_of_n.choices(decodes, energies)
    assert keys == KEYS
    np.testing.assert_array_equal(picks["oracle: lowest mcd"], MCD.argmin(axis=1))
    np.testing.assert_array_equal(picks["oracle: highest predicted_mos"], MCD.argmin(axis=1))
    np.testing.assert_array_equal(picks["seeded (the first decode)"], [0, 0, 0, 0])
    np.testing.assert_array_equal(picks["medoid (mel distance)"], [1, 1, 1, 1])
    np.testing.assert_array_equal(picks["lowest energy per frame"], [1, 1, 1, 1])
    assert set(extra) == {"mel_distance", "mcd"}
    out = best_of_n.table(keys, values, picks, extra, n_boot=200)
    oracle = next(line for line in out.splitlines() if line.startswith("| oracle: lowest mcd"))
    gain = MCD.min(axis=1).mean() - MCD[:, 0].mean()
    assert oracle.startswith(f"| oracle: lowest mcd | {MCD.min(axis=1).mean():.3f} | {gain:+.3f} [")


def test_main_writes_the_table(decodes, tmp_path, capsys):
    out = tmp_path / "best.md"
    best_of_n.main(sum((["--decode", *d] for d in decodes), []) + ["--output", str(out), "--n_boot", "100"])
    assert out.read_text() == capsys.readouterr().out
    assert "medoid (mel distance)" in out.read_text() and "energy" not in out.read_text()


def test_mismatches_are_refused(decodes, tmp_path):
    with pytest.raises(EbmError, match="at least two"):
        best_of_n.main(["--decode", *decodes[0]])
    with pytest.raises(EbmError, match="one per decode"):
        best_of_n.choices(decodes, [energy_file(tmp_path, 0, [1.0] * 4)])
    short = tmp_path / "short.tsv"
    short.write_text("\n".join(open(decodes[1][1]).read().splitlines()[:-1]) + "\n")
    with pytest.raises(EbmError, match="short.tsv .* scores other utterances"):
        best_of_n.choices([decodes[0], [decodes[1][0], str(short), decodes[1][2]]])
    partial = tmp_path / "energy_partial"
    partial.write_text("u1 -3.0\n")
    with pytest.raises(EbmError, match="energy_partial has no energy for 3 utterances"):
        best_of_n.choices(decodes, [str(partial)] * 3)
    nan = tmp_path / "nan.tsv"
    nan.write_text(open(decodes[2][1]).read().replace("\t6.00000\t", "\tnan\t", 1))
    with pytest.raises(EbmError, match="nan.tsv .*mel_distance of u1 is NaN"):
        best_of_n.choices([decodes[0], decodes[1], [decodes[2][0], str(nan), decodes[2][2]]])
