"""The listening page of stage 7: the comparison table and its verdict, then each eval utterance's text, audio and
mel for every system.

Numbers say whether the EBM wins; listening says how. The page is one self-contained HTML file (inline CSS, no
scripts, nothing fetched from a network) in ``exp/results_<vocoder>/``. Its audio links point, relatively, at the
wavs stage 7 already vocoded (nothing is copied), so it opens from a file browser or any static server and keeps
working when the recipe directory moves as a whole. The table and the verdict are read from what
``ebm.bin.make_results`` wrote in the same stage and never recomputed here, so the page cannot disagree with
RESULTS.md; a field that an older or newer RESULTS.json lacks shows as "n/a".

Systems: the recording, analysis-synthesis (the recording's mel through the vocoder), Tacotron 2, the variance
control and each EBM at the settings RESULTS.json marks as chosen on dev. Their mel images share one colour scale
(the recording's range) and one time scale per utterance, so that a sharper, blurrier or longer spectrogram shows
as such; a model's image is its output mel (what the EBM refines), the recording's and analysis-synthesis' are the
mels of their audio.
"""

import html
import logging
import os
import re
import shutil
import urllib.parse
from dataclasses import dataclass
from typing import Optional

import numpy as np
import soundfile as sf

from ebm.cli import EbmError
from ebm.io import open_feats_scp, read_scp, write_atomic
from ebm.results import CONDITIONS, load_records, verdict_at_a_glance

NA = "n/a"
MEL_DIR = "mels"
MAX_MEL_WIDTH = 400  # pixels: longer utterances are averaged over time so that the images stay small

# Known eval metrics first, in this order and with these headers; any other scalar in the records follows.
METRIC_LABELS = {"mcd": "MCD (dB)", "predicted_mos": "predicted MOS", "mel_distance": "mel distance (dB)",
                 "mcd_silence_share": "MCD share in silence", "log_f0_rmse": "log-F0 RMSE", "vde": "VDE",
                 "gpe": "GPE", "ffe": "FFE", "rtf": "RTF"}
NOT_METRICS = {"n_utts"}

CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
.meta { color: #555; margin-top: 0; }
.verdict { background: #f4f7fb; border-left: 4px solid #3b6ea5; padding: 0.5em 1em; margin: 1em 0; }
.verdict li { margin: 0.3em 0; }
.verdict details { margin-top: 0.4em; }
table.glance { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; background: #fff; }
table.glance th, table.glance td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right;
                                   white-space: nowrap; }
table.glance th { background: #eee; }
table.glance td.name { text-align: left; white-space: normal; min-width: 14em; }
table.glance .ci { color: #555; font-size: 0.85em; }
table.glance td.pass { background: #e6f4e6; }
table.glance td.fail { background: #fbe3e3; }
.scroll { overflow-x: auto; }
table.metrics { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
table.metrics th { background: #eee; }
table.metrics td.name { text-align: left; }
table.metrics tr.chosen td { font-weight: bold; background: #fffbe6; }
section.utt { border-top: 1px solid #ccc; padding: 0.5em 0 1em; }
section.utt h2 { font-size: 1.05em; margin: 0.4em 0 0.2em; font-family: monospace; }
p.text { font-size: 1.1em; margin: 0.2em 0 0.6em; }
.systems { display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 0.6em; }
.system { border: 1px solid #ddd; border-radius: 4px; padding: 0.4em; background: #fafafa;
          display: flex; flex-direction: column; }
.system h3 { font-size: 0.9em; margin: 0 0 0.3em; flex: 1; }
.system audio { width: 100%; height: 32px; }
.system img { height: 80px; display: block; margin-top: 0.3em; image-rendering: pixelated; }
.note { color: #777; font-size: 0.85em; }
"""


@dataclass
class System:
    """One column of every utterance: where its audio and its mel are."""

    key: str  # its mel images' file name part
    label: str
    wav_scp: Optional[str]  # None: not decoded on the eval set (``note`` says why)
    feats_scp: Optional[str] = None  # the model's output mel; None: the mel of its audio
    note: str = ""


def _num(v):
    if isinstance(v, bool) or v is None:
        return NA if v is None else str(v)
    if isinstance(v, (int, float)):
        return "nan" if isinstance(v, float) and np.isnan(v) else f"{v:.4g}"
    return str(v)


def _name(rec):
    system = rec.get("system", NA)
    if system == "analysis-synthesis":
        return "analysis-synthesis"
    if system == "tacotron2":
        return "Tacotron 2"
    if system == "control_gv":
        return f"Tacotron 2 + {rec.get('criterion') or 'variance scaling'} (control)"
    if system == "ebm":
        return f"EBM {rec.get('exp') or NA}"
    return str(system)


def _part(rec, part):
    v = rec.get(part)
    return v if isinstance(v, dict) else {}


def metric_columns(records):
    """The eval metrics the records carry: scalars only (intervals and nested analyses stay in RESULTS.json)."""
    seen = []
    for r in records:
        for k, v in _part(r, "eval").items():
            if k not in seen and k not in NOT_METRICS and (v is None or isinstance(v, (int, float))) \
                    and not isinstance(v, bool):
                seen.append(k)
    return [k for k in METRIC_LABELS if k in seen] + [k for k in seen if k not in METRIC_LABELS]


def table_html(records):
    """Every row with eval numbers (and every dev-chosen one); dev-only search settings are counted, not listed."""
    shown = [r for r in records if r.get("eval") is not None or r.get("chosen_on_dev")]
    cols = metric_columns(shown)
    head = ["system", "criterion", "steps", "lambda", "sigma", "dev MCD"]
    head += [f"eval {METRIC_LABELS.get(c, c.replace('_', ' '))}" for c in cols]
    out = ['<div class="scroll"><table class="metrics">',
           "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in shown:
        cells = [_name(r), r.get("criterion") or "-"] + [_num(r.get(k)) if k in r else NA
                                                         for k in ("steps", "lambda", "sigma")]
        cells.append(_num(_part(r, "dev").get("mcd")))
        cells += [_num(_part(r, "eval").get(c)) for c in cols]
        cls = ' class="chosen"' if r.get("chosen_on_dev") else ""
        out.append(f"<tr{cls}>" + f'<td class="name">{html.escape(cells[0])}</td>'
                   + "".join(f"<td>{html.escape(c)}</td>" for c in cells[1:]) + "</tr>")
    out.append("</table></div>")
    hidden = len(records) - len(shown)
    if hidden:
        out.append(f'<p class="note">{hidden} more settings were decoded on dev only; RESULTS.md and its search '
                   "log list them.</p>")
    return "\n".join(out)


def _inline_markdown(text):
    """RESULTS.md's verdict lines use **bold** and `code` only."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def verdict_lines(records, results_md=None):
    """The verdict as make_results stated it: a ``verdict`` field of the records where RESULTS.json has one,
    otherwise the lines of RESULTS.md's verdict section (written in the same call)."""
    lines = [f"`{r.get('exp') or _name(r)}`: {r['verdict']}" for r in records
             if isinstance(r.get("verdict"), str) and r["verdict"]]
    if lines or not results_md or not os.path.isfile(results_md):
        return lines
    with open(results_md, encoding="utf-8") as f:
        md = f.read()
    m = re.search(r"^## Verdict[^\n]*\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M)
    if not m:
        return []
    lines = [line.strip() for line in m.group(1).splitlines() if line.strip() and not line.lstrip().startswith("|")]
    bullets = [re.sub(r"^[-*] ", "", line) for line in lines if re.match(r"[-*] ", line)]
    return bullets or lines  # the section's bullets, not its table (the page draws that from RESULTS.json)


def glance_html(records):
    """The verdict as a table (ebm.results.verdict_at_a_glance), one row per dev-chosen EBM (and one for the control,
    judged on nothing), each condition's cell green where it holds and red where it fails, its interval below the
    mean; empty for a RESULTS.json that predates the stored conditions."""
    rows = verdict_at_a_glance(records)
    if not rows:
        return ""
    head = ["system (dev-chosen setting)"] + [h for _, _, h, _, _ in CONDITIONS] + ["beats Tacotron 2"]
    out = ['<div class="scroll"><table class="glance">',
           "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        name = (f'<code>{html.escape(row["exp"])}</code> ({html.escape(row["setting"])})' if row["exp"]
                else html.escape(row["setting"]))
        cells = [f'<td class="name">{name}</td>']
        for text, ok in row["cells"]:
            m = re.match(r"(\S+) (\[[^\]]*\])(.*)$", text)  # "mean [low, high] (relative)": the interval below
            body = (html.escape(m.group(1) + m.group(3)) + (" &#10003;" if ok else " &#10007;" if ok is False else "")
                    + f'<br><span class="ci">{html.escape(m.group(2))}</span>') if m else html.escape(text)
            cls = "" if ok is None else f' class="{"pass" if ok else "fail"}"'  # None: not judged
            cells.append(f"<td{cls}>{body}</td>")
        beats = row["beats"]
        cells.append("<td>-</td>" if beats is None else
                     f'<td class="{"pass" if beats else "fail"}"><strong>{"yes" if beats else "no"}</strong></td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div><p class=\"note\">Per-utterance difference from Tacotron 2 with its 95% interval "
               "(the last condition: from the control); &#10003; the condition holds, &#10007; it fails. The sentences "
               "below give the numbers behind each.</p>")
    return "\n".join(out)


def _dir_name(d):
    d = os.path.normpath(d)
    return os.path.basename(os.path.dirname(d)), os.path.basename(d)


def chosen_systems(records, ground_truth, baseline, ebm_dirs, control_dirs, eval_set, vocoder_tag):
    """The columns: the fixed systems, then the control and each EBM that RESULTS.json marks as chosen on dev,
    found among the decode dirs stage 7 gave make_results (matched by their names, which RESULTS.json keeps)."""

    def wavs(d):
        return os.path.join(d, eval_set, f"wav_{vocoder_tag}", "wav.scp")

    def feats(d):
        return os.path.join(d, eval_set, "denorm", "feats.scp")

    systems = [System("analysis_synthesis", f"analysis-synthesis ({vocoder_tag})", wavs(ground_truth)),
               System("tacotron2", "Tacotron 2", wavs(baseline), feats(baseline))]
    for r in records:
        if not r.get("chosen_on_dev") or r.get("system") not in ("control_gv", "ebm"):
            continue
        decode = r.get("decode")
        if r["system"] == "control_gv":
            found = [d for d in control_dirs if _dir_name(d)[1] == decode]
            key, label = "control", _name(r)
        else:
            found = [d for d in ebm_dirs if _dir_name(d) == (r.get("exp"), decode)]
            key = f"ebm_{r.get('exp')}"
            steps = _num(r.get("steps"))
            label = (f"EBM {r.get('exp')}: {steps} step{'' if steps == '1' else 's'}, "
                     f"lambda {_num(r.get('lambda'))}, sigma {_num(r.get('sigma'))}")
        if not found:
            raise EbmError(f"RESULTS.json chooses {r.get('exp') or r['system']}/{decode} on dev, but it is not among "
                           "the --ebm/--control dirs given: give the page the dirs make_results was given")
        d = found[0]
        if os.path.isfile(wavs(d)):
            systems.append(System(key, label, wavs(d), feats(d)))
        else:  # a search setting decoded on dev only
            systems.append(System(key, label, None, note=f"not decoded on {eval_set} at this setting (search.sh's "
                                                         "stage 3 decodes it)"))
    return systems


def _read_wav_scp(path, utts):
    entries = dict(read_scp(path))
    missing = [u for u in utts if u not in entries]
    if missing:
        raise EbmError(f"{path} lacks {len(missing)} of the utterances shown, e.g. {missing[:3]}: rerun stage 7")
    for u in utts:
        if not os.path.isfile(entries[u]):
            raise EbmError(f"{path}: the wav of {u}, {entries[u]}, does not exist: rerun stage 7")
    return {u: entries[u] for u in utts}


def mel_image(mel, path, vmin, vmax):
    """A small PNG of a (T, n_mels) log mel, low bins at the bottom; long utterances averaged over time."""
    from matplotlib.image import imsave

    mel = np.asarray(mel, dtype=np.float32)
    step = -(-len(mel) // MAX_MEL_WIDTH)
    if step > 1:
        n = len(mel) // step * step
        mel = mel[:n].reshape(-1, step, mel.shape[1]).mean(axis=1)
    imsave(path, mel.T, vmin=vmin, vmax=vmax, cmap="viridis", origin="lower")


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _link(path, out_dir):
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir)).replace(os.sep, "/")
    return html.escape(urllib.parse.quote(rel), quote=True)


def _section(utt, text, systems, audio, mels_of, audio_mel, tmp_dir, mel_dir, output_dir):
    """One utterance: its text, then a card per system with the audio player and the mel image (written to
    ``tmp_dir``, linked where it will be, ``mel_dir``). The images share a time scale too: a decode that runs
    too long shows as a longer image."""
    ref = audio_mel(audio["recording"][utt])
    vmin, vmax = float(np.percentile(ref, 1)), float(ref.max())
    mels = {}
    for s in systems:
        if s.wav_scp is None:
            continue
        if s.key == "recording":
            mels[s.key] = ref
        elif s.key in mels_of:
            if utt not in mels_of[s.key]:
                raise EbmError(f"{s.feats_scp} lacks {utt}: rerun the stage that decodes it")
            mels[s.key] = np.asarray(mels_of[s.key][utt])
        else:
            mels[s.key] = audio_mel(audio[s.key][utt])
    longest = max(len(m) for m in mels.values())
    cards = []
    for s in systems:
        head = f"<h3>{html.escape(s.label)}</h3>"
        if s.wav_scp is None:
            cards.append(f'<div class="system">{head}<p class="note">{html.escape(s.note)}</p></div>')
            continue
        png = f"{_safe(utt)}_{_safe(s.key)}.png"
        mel_image(mels[s.key], os.path.join(tmp_dir, png), vmin, vmax)
        alt = (f"{utt}: {s.label}, " + ("its output mel" if s.key in mels_of else "the mel of its audio")
               + f", {len(mels[s.key])} frames")
        width = 100.0 * len(mels[s.key]) / longest
        cards.append(f'<div class="system">{head}'
                     f'<audio controls preload="none" src="{_link(audio[s.key][utt], output_dir)}"></audio>'
                     f'<img src="{_link(os.path.join(mel_dir, png), output_dir)}" alt="{html.escape(alt)}" '
                     f'title="{html.escape(alt)}" style="width: {width:.1f}%"></div>')
    return (f'<section class="utt" id="{html.escape(_safe(utt))}"><h2>{html.escape(utt)}</h2>'
            f'<p class="text">{html.escape(text)}</p>\n<div class="systems">\n' + "\n".join(cards)
            + "\n</div></section>")


def write_listening_page(results_json, data_dir, eval_set, vocoder_tag, ground_truth, baseline, output_dir,
                         settings, ebm_dirs=(), control_dirs=(), results_md=None, max_utts=20, title=""):
    """Write ``output_dir/index.html`` and its mel images (``output_dir/mels/``); returns the page's path.

    The old page goes first and the new one is renamed into place last, so a failed run leaves no page that
    looks complete."""
    if max_utts < 1:
        raise EbmError(f"--max_utts {max_utts}: show at least one utterance")
    page = os.path.join(output_dir, "index.html")
    if os.path.exists(page):
        os.remove(page)
    records = load_records(results_json)
    texts = dict(read_scp(os.path.join(data_dir, "text"), allow_empty_value=True))
    utts = sorted(texts)[:max_utts]
    if not utts:
        raise EbmError(f"{data_dir}/text has no utterances")
    systems = chosen_systems(records, ground_truth, baseline, ebm_dirs, control_dirs, eval_set, vocoder_tag)
    recording = System("recording", "recording", os.path.join(data_dir, "wav.scp"))
    systems = [recording] + systems
    audio = {s.key: _read_wav_scp(s.wav_scp, utts) for s in systems if s.wav_scp}
    mels_of = {s.key: open_feats_scp(s.feats_scp) for s in systems if s.wav_scp and s.feats_scp}

    os.makedirs(output_dir, exist_ok=True)
    mel_dir = os.path.join(output_dir, MEL_DIR)
    tmp_dir = f"{mel_dir}.tmp{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)

    def audio_mel(wav_path):
        wav, fs = sf.read(wav_path, dtype="float32")
        if fs != settings.fs:
            raise EbmError(f"{wav_path} is at {fs} Hz, not the recipe's --fs {settings.fs}: rerun stages 1 and 7")
        return settings.logmel(wav if wav.ndim == 1 else wav.mean(axis=1))

    try:
        sections = [_section(utt, texts[utt], systems, audio, mels_of, audio_mel, tmp_dir, mel_dir, output_dir)
                    for utt in utts]
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise

    verdicts = verdict_lines(records, results_md)
    verdict = ("<ul>" + "".join(f"<li>{_inline_markdown(v)}</li>" for v in verdicts) + "</ul>") if verdicts \
        else f"<p>{NA}</p>"
    glance = glance_html(records)
    if glance:  # the table leads; the sentences stay one click away
        verdict = f"{glance}\n<details><summary>The verdict in full</summary>\n{verdict}\n</details>"
    links = []
    for path, what in [(results_md, "RESULTS.md"), (results_json, "RESULTS.json")] + [
            (os.path.join(output_dir, p), p) for p in sorted(os.listdir(output_dir)) if p.endswith(".png")]:
        if path and os.path.isfile(path):
            links.append(f'<a href="{_link(path, output_dir)}">{html.escape(what)}</a>')
    shown = f"{len(utts)} of {len(texts)}" if len(utts) < len(texts) else f"all {len(utts)}"
    heading = f"Listening page{': ' + title if title else ''}"
    doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(heading)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{html.escape(heading)}</h1>
<p class="meta">Eval set <code>{html.escape(eval_set)}</code> ({shown} utterances shown), vocoder
<code>{html.escape(vocoder_tag)}</code> for every system; settings chosen on dev.
{' | '.join(links)}</p>
<div class="verdict"><strong>Verdict</strong> (eval, at the settings chosen on dev)
{verdict}</div>
{table_html(records)}
<p class="note">Bold rows: the settings chosen on dev, whose audio is below. Mel images share the recording's colour
scale and time scale within each utterance; a model's image is its output mel, the recording's and
analysis-synthesis' are the mels of their audio.</p>
{chr(10).join(sections)}
</body>
</html>
"""
    shutil.rmtree(mel_dir, ignore_errors=True)
    os.replace(tmp_dir, mel_dir)
    write_atomic(page, doc)
    logging.info(f"wrote {page}: {len(utts)} utterances x {len(systems)} systems (mel images in {mel_dir})")
    return page
