"""ebm.bin.benchmark_decoding end to end on a tiny Tacotron 2 and three texts: every row is timed in each round and
keeps its rounds, batched rows decode every pooled sample at its forced length, and the JSON names the model."""

import json

import pytest
import yaml

from ebm.bin import benchmark_decoding
from ebm.cli import EbmError

TTS_CONF = dict(embed_dim=16, elayers=1, eunits=16, econv_layers=1, econv_chans=16, econv_filts=5,
                atype="location", adim=16, aconv_chans=4, aconv_filts=5, cumulate_att_w=True, dlayers=1, dunits=24,
                prenet_layers=2, prenet_units=16, postnet_layers=2, postnet_chans=16, postnet_filts=5,
                use_batch_norm=True, dropout_rate=0.5, zoneout_rate=0.1, reduction_factor=2)


@pytest.fixture
def inputs(tmp_path):
    config = tmp_path / "train_tacotron2_tiny.yaml"
    config.write_text(yaml.safe_dump(dict(tts="tacotron2", tts_conf=TTS_CONF)))
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("a short one.\nthe second text is longer.\nhi.\n")
    return config, sentences


def test_rows_rounds_and_model_name(inputs, tmp_path, capsys):
    config, sentences = inputs
    out = tmp_path / "bench.json"
    benchmark_decoding.main(["--configs", f"tiny={config}", "--sentences", str(sentences), "--last", "0",
                             "--batch_sizes", "2,4", "--teacher_forced_batch_sizes", "2", "--samples", "2",
                             "--repeats", "2", "--fs", "8000", "--n_fft", "256", "--n_shift", "64", "--n_mels", "20",
                             "--frames_per_char", "2.0", "--json", str(out)])
    result = json.loads(out.read_text())["results"][0]
    assert result["model"] == "tiny"
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {"free_running stage 4 today (+Griffin-Lim)", "free_running espnet one at a time",
                         "free_running batched, batch 1", "free_running batched, batch 2",
                         "free_running batched, batch 4", "teacher_forced espnet one at a time",
                         "teacher_forced batched, batch 2"}
    assert all(len(r["cpu_seconds_rounds"]) == 2 for r in rows.values())
    one = rows["free_running espnet one at a time"]
    assert rows["free_running batched, batch 4"]["frames"] == 2 * one["frames"]  # two samples of every text
    assert rows["free_running batched, batch 4"]["utterances"] == 6
    assert "from tiny's measured RTFs" in capsys.readouterr().out


def test_no_rounds_is_refused(inputs):
    config, sentences = inputs
    with pytest.raises(EbmError, match="--repeats 0"):
        benchmark_decoding.main(["--configs", f"tiny={config}", "--sentences", str(sentences), "--repeats", "0"])
