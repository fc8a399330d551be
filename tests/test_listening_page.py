"""The listening page on a hand-made stage 7 layout: its structure, its escaping, and that every link resolves."""

import json
import os
import re
import urllib.parse
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import run_module, write_tone
from ebm.cli import EbmError
from ebm.listening_page import write_listening_page
from ebm.vocoder import FeatureSettings

FS = 8000
SETTINGS = FeatureSettings(fs=FS, n_fft=256, n_shift=64, n_mels=20, fmin=0, fmax=4000)
TEXTS = {"u1": "The cat <b>sat</b> & ran.", "u2": "Second one.", "u3": "Third one."}
VERDICT = "**does not beat Tacotron 2** on 3 eval utterances: MCD 9.000 vs 9.500 dB"
TAG = "griffin_lim"


class Page(HTMLParser):
    """What a reader sees: tables, the verdict box, one record per utterance section, and every link."""

    def __init__(self):
        super().__init__()
        self.links, self.sections, self.tags, self.stack = [], [], [], []
        self.verdict_text, self.table_cells, self.text = "", [], {}
        self.glance = []  # the verdict table's rows: [(cell class, cell text), ...]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        cls = a.get("class", "")
        if tag not in ("meta", "img", "br"):
            self.stack.append((tag, cls))
        if tag == "section" and cls == "utt":
            self.sections.append({"id": a.get("id"), "audio": 0, "img": 0, "labels": []})
        for key in ("src", "href"):
            if key in a:
                self.links.append(a[key])
        if tag in ("audio", "img") and self.sections:
            self.sections[-1][tag] += 1
        if ("table", "glance") in self.stack[:-1]:
            if tag == "tr":
                self.glance.append([])
            elif tag == "td":
                self.glance[-1].append([cls, ""])

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        classes = [c for _, c in self.stack]
        if "verdict" in classes:
            self.verdict_text += data
        if self.stack and self.stack[-1][0] == "td":
            self.table_cells.append(data)
        if ("table", "glance") in self.stack and "td" in [t for t, _ in self.stack]:
            self.glance[-1][-1][1] += data
        if self.sections and self.stack and self.stack[-1][0] == "h3":
            self.sections[-1]["labels"].append(data)
        if self.sections and self.stack and self.stack[-1] == ("p", "text"):
            self.text[self.sections[-1]["id"]] = self.text.get(self.sections[-1]["id"], "") + data


def parse(path):
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def decode_dir(root, rel, utts, feats=True):
    """A system's eval decode in stage 7's layout: wav_<tag>/wav.scp (absolute paths) and denorm/feats.scp."""
    d = root / rel / "eval1"
    (d / f"wav_{TAG}").mkdir(parents=True)
    lines, flines = [], []
    for n, u in enumerate(utts):
        wav = write_tone(d / f"wav_{TAG}" / f"{u}.wav", seconds=0.2, fs=FS, freq=200 + 20 * n)
        lines.append(f"{u} {wav}\n")
        if feats:
            (d / "denorm").mkdir(exist_ok=True)
            np.save(d / "denorm" / f"{u}.npy", np.random.default_rng(n).normal(size=(20, 20)).astype(np.float32))
            flines.append(f"{u} {d / 'denorm' / u}.npy\n")
    (d / f"wav_{TAG}/wav.scp").write_text("".join(lines))
    if feats:
        (d / "denorm/feats.scp").write_text("".join(flines))
    return root / rel


@pytest.fixture
def layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # stage 7 runs in the recipe dir: the recordings' wav.scp is relative to it
    utts = sorted(TEXTS)
    data = tmp_path / "dump/raw/eval1"
    data.mkdir(parents=True)
    (data / "text").write_text("".join(f"{u} {t}\n" for u, t in TEXTS.items()))
    (tmp_path / "wavs").mkdir()
    for u in utts:
        write_tone(tmp_path / "wavs" / f"{u}.wav", seconds=0.2, fs=FS)
    (data / "wav.scp").write_text("".join(f"{u} wavs/{u}.wav\n" for u in utts))
    d = {
        "gt": decode_dir(tmp_path, "exp/analysis_synthesis", utts, feats=False),
        "base": decode_dir(tmp_path, "exp/tts/decode_free_running", utts),
        "ctl": [decode_dir(tmp_path, f"exp/tts/decode_free_running_gv{s}", utts) for s in ("1.5", "2")],
        "ebm": [decode_dir(tmp_path, f"exp/ebm_a/decode_langevin_steps{s}_from_free_running", utts) for s in (0, 2)],
    }
    dev_only = tmp_path / "exp/ebm_b/decode_langevin_steps1_from_free_running/dev"  # a search setting: dev only
    dev_only.mkdir(parents=True)
    d["ebm"].append(dev_only.parent)

    def rec(system, mcd, **kw):
        r = {"system": system, "criterion": None, "steps": None, "lambda": None, "sigma": None, "chosen_on_dev": False,
             "vocoder": TAG, "dev": {"mcd": mcd + 0.1}, "eval": {"mcd": mcd, "log_f0_rmse": 0.2, "ffe": 0.3,
                                                               "n_utts": 3, "mcd_diff_ci95": [0.1, 0.0, 0.2]}}
        r.update(kw)
        return r

    records = [rec("analysis-synthesis", 5.0), rec("tacotron2", 9.5),
               rec("control_gv", 9.2, criterion="variance x1.5", decode="decode_free_running_gv1.5", scale=1.5,
                   chosen_on_dev=True, exp="control_gv"),
               rec("control_gv", 9.3, criterion="variance x2", decode="decode_free_running_gv2", scale=2.0,
                   exp="control_gv"),
               rec("ebm", 9.5, exp="ebm_a", decode="decode_langevin_steps0_from_free_running", steps=0),
               rec("ebm", 9.0, exp="ebm_a", decode="decode_langevin_steps2_from_free_running", steps=2,
                   chosen_on_dev=True, criterion="binary_nce"),
               rec("ebm", 8.0, exp="ebm_b", decode="decode_langevin_steps1_from_free_running", steps=1,
                   chosen_on_dev=True, eval=None)]
    del records[0]["eval"]["ffe"]  # a field this RESULTS.json lacks: shown as n/a
    (tmp_path / "RESULTS.json").write_text(json.dumps(records))
    (tmp_path / "RESULTS.md").write_text(f"# RESULTS\n\n## Verdict (eval, at the dev-chosen setting)\n\n"
                                         f"- `ebm_a` (binary_nce; 2 steps): {VERDICT}\n\n## All systems\n\n| x |\n")
    d["kwargs"] = dict(results_json="RESULTS.json", data_dir="dump/raw/eval1", eval_set="eval1", vocoder_tag=TAG,
                       ground_truth=str(d["gt"]), baseline=str(d["base"]), output_dir="exp/results_griffin_lim",
                       settings=SETTINGS, ebm_dirs=[str(p) for p in d["ebm"]],
                       control_dirs=[str(p) for p in d["ctl"]], results_md="RESULTS.md")
    d["root"] = tmp_path
    return d


def test_page_structure_and_links(layout):
    page = layout["root"] / write_listening_page(**layout["kwargs"])
    p = parse(page)
    assert "table" in p.tags and "script" not in p.tags and "link" not in p.tags  # self-contained, inline CSS only
    assert "does not beat Tacotron 2 on 3 eval utterances" in " ".join(p.verdict_text.split())
    assert "n/a" in p.table_cells and "variance x1.5" in " ".join(p.table_cells)
    assert [s["id"] for s in p.sections] == sorted(TEXTS)
    for s in p.sections:  # recording, analysis-synthesis, Tacotron 2, the chosen control, the chosen EBM (+ a note)
        assert s["audio"] == 5 and s["img"] == 5, s
        labels = " | ".join(s["labels"])
        assert labels.startswith("recording | analysis-synthesis (griffin_lim) | Tacotron 2 | ") and "x1.5" in labels
        assert "EBM ebm_a: 2 steps" in labels and "EBM ebm_b: 1 step," in labels and "x2 " not in labels
    assert p.text["u1"] == TEXTS["u1"]  # escaped in the file, so the parser gives the text back, not a <b> tag
    assert "b" not in p.tags and "&lt;b&gt;" in page.read_text()
    audio = [link for link in p.links if link.endswith(".wav")]
    assert len(audio) == 3 * 5 and any("decode_langevin_steps2" in a for a in audio)
    assert not any("steps0" in a for a in audio)  # not the chosen setting
    for link in p.links:
        assert "://" not in link and not link.startswith("/"), link
        assert (page.parent / urllib.parse.unquote(link)).is_file(), link
    assert len(list((page.parent / "mels").glob("*.png"))) == 3 * 5


def test_utterance_cap_and_failures(layout):
    out = layout["root"] / "exp/results_griffin_lim"
    page = layout["root"] / write_listening_page(**{**layout["kwargs"], "max_utts": 2})
    assert [s["id"] for s in parse(page).sections] == ["u1", "u2"]
    os.remove(layout["base"] / f"eval1/wav_{TAG}/u2.wav")
    with pytest.raises(EbmError, match="the wav of u2"):
        write_listening_page(**layout["kwargs"])
    assert not page.exists() and not list(out.glob("mels.tmp*"))  # no stale page that looks complete

    proc = run_module("ebm.bin.make_listening_page", "--results_json", "missing.json", "--data_dir", "dump/raw/eval1",
                      "--eval_set", "eval1", "--vocoder_tag", TAG, "--ground_truth", layout["gt"], "--baseline",
                      layout["base"], "--output_dir", out, cwd=layout["root"])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("ERROR: missing.json does not exist: run stage 7")


def test_verdict_from_results_json_when_it_has_one(layout):
    records = json.loads((layout["root"] / "RESULTS.json").read_text())
    records[4]["verdict"] = "**beats Tacotron 2** (from the JSON)"
    (layout["root"] / "RESULTS.json").write_text(json.dumps(records))
    p = parse(layout["root"] / write_listening_page(**layout["kwargs"]))
    assert "ebm_a: beats Tacotron 2 (from the JSON)" in " ".join(p.verdict_text.split())


def test_verdict_table_leads_when_results_json_stores_the_conditions(layout):
    records = json.loads((layout["root"] / "RESULTS.json").read_text())
    chosen = next(r for r in records if r.get("exp") == "ebm_a" and r["chosen_on_dev"])
    chosen.update({"lambda": 0.6, "sigma": 0.0})
    chosen["eval"]["diff_vs_tacotron2_ci95"] = {"mcd": [-0.3, -0.5, -0.1], "predicted_mos": [-0.2, -0.3, -0.1],
                                                    "log_f0_rmse": [0.0, -0.01, 0.01], "ffe": [0.0, -0.01, 0.01]}
    chosen["eval"]["mcd_diff_vs_control_ci95"] = [0.1, -0.1, 0.3]
    chosen["eval"]["verdict_conditions"] = {"mcd": True, "predicted_mos": False, "log_f0_rmse": True,
                                                "ffe": True, "vs_control": False}
    (layout["root"] / "RESULTS.json").write_text(json.dumps(records))
    page = layout["root"] / write_listening_page(**layout["kwargs"])
    p = parse(page)
    assert [[(c, " ".join(t.split())) for c, t in row] for row in p.glance if row] == [[
        ("name", "ebm_a (2 steps, lambda 0.6, sigma 0.0)"), ("pass", "-0.300 (-5.3%) \u2713[-0.500, -0.100]"),
        ("fail", "-0.200 \u2717[-0.300, -0.100]"), ("pass", "+0.0000 \u2713[-0.0100, +0.0100]"),
        ("pass", "+0.0000 \u2713[-0.0100, +0.0100]"), ("fail", "+0.100 \u2717[-0.100, +0.300]"), ("fail", "no")]]
    text = page.read_text()
    assert text.index('class="glance"') < text.index("<details>") < text.index("does not beat Tacotron 2")
    # RESULTS.md's verdict section as make_results writes it (caption, table, bullets): the page lists the bullets
    md = layout["root"] / "RESULTS.md"
    md.write_text(md.read_text().replace("## Verdict (eval, at the dev-chosen setting)\n\n",
                                         "## Verdict (eval, at the dev-chosen setting)\n\nEach row's difference.\n\n"
                                         "| system | MCD |\n|---|---|\n| `ebm_a` (2 steps) | -0.3 |\n\n"))
    text = (layout["root"] / write_listening_page(**layout["kwargs"])).read_text()
    items = re.findall(r"<li>(.*?)</li>", text, flags=re.S)
    assert len(items) == 1 and "does not beat Tacotron 2" in items[0] and "|" not in items[0]
