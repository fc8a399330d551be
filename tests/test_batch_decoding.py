"""Batched Tacotron 2 decoding against ESPnet's one-at-a-time ``Text2Speech`` on a tiny random model (CPU).

With prenet dropout off the two must agree: features within float tolerance and lengths exactly, teacher-forced
and free-running, for texts of different lengths in one batch, whether an utterance stops on its stop token or at
the maximum length, and with texts repeated as stage 4 pools them. Stage 4's entry point with ``--batch_size`` > 1
must write the one-at-a-time layout.
"""

import contextlib
import io

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ebm.batch_decoding import BatchDecoder
from ebm.bin import decode_baseline
from ebm.cli import EbmError

TOKENS = ["<blank>", "<unk>", "<space>", *"abcdefghijklmnopqrstuvwxyz", ".", "<sos/eos>"]
TEXTS = {"u1": "a bad cab.", "u2": "hi", "u3": "the quick brown fox jumps", "u4": "zzz top", "u5": "a"}
TACOTRON = dict(embed_dim=16, elayers=1, eunits=16, econv_layers=2, econv_chans=16, econv_filts=5, atype="location",
                adim=16, aconv_chans=4, aconv_filts=5, cumulate_att_w=True, dlayers=2, dunits=24, prenet_layers=2,
                prenet_units=16, postnet_layers=3, postnet_chans=16, postnet_filts=5, use_batch_norm=True,
                dropout_rate=0.5, zoneout_rate=0.1, reduction_factor=2)
FS, N_MELS = 8000, 20


def build_model(tmp):
    """A random ESPnet Tacotron 2 (config.yaml + model.pth) with log-mel features and global MVN, as stage 3 writes."""
    with contextlib.redirect_stdout(io.StringIO()):
        from espnet2.tasks.tts import TTSTask
    rng = np.random.default_rng(0)
    stats = tmp / "feats_stats.npz"
    np.savez(stats, count=np.array(100), sum=rng.normal(size=N_MELS) * 100 - 500,
             sum_square=np.full(N_MELS, 100 * 30.0) + 2500)
    args = TTSTask.get_parser().parse_args([])
    args.token_list, args.token_type, args.cleaner, args.g2p = TOKENS, "char", None, None
    args.feats_extract_conf = dict(fs=FS, n_fft=256, hop_length=64, win_length=None, n_mels=N_MELS, fmin=0,
                                   fmax=4000)
    args.normalize_conf = dict(stats_file=str(stats))
    args.tts_conf = dict(TACOTRON)
    torch.manual_seed(0)
    model = TTSTask.build_model(args)
    make_stop_token_fire(model.tts.dec)
    torch.save(model.state_dict(), tmp / "model.pth")
    with open(tmp / "config.yaml", "w") as f:
        yaml.safe_dump(vars(args), f)
    return tmp / "config.yaml", tmp / "model.pth"


def make_stop_token_fire(dec):
    """Random weights never cross a stop threshold mid-utterance: make one unit of the last decoder cell count the
    steps at a rate that depends on the text, and the stop probability read it, so some utterances stop on
    their stop token, at different steps, and others run to the maximum length."""
    cell = dec.lstm[-1].cell  # inside ESPnet's ZoneOutCell
    h = cell.hidden_size
    gates = [0, h, 2 * h, 3 * h]  # unit 0 of the input, forget, cell and output gates
    torch.manual_seed(3)
    with torch.no_grad():
        cell.bias_hh[gates] = 0.0
        cell.weight_hh[gates] = 0.0
        cell.bias_ih[gates] = torch.tensor([10.0, 10.0, 0.05, 10.0])  # i, f, o open: c integrates g
        cell.weight_ih[2 * h] = 0.15 * torch.randn(cell.weight_ih.size(1))
        dec.prob_out.weight.zero_()
        dec.prob_out.weight[:, 0] = 20.0
        dec.prob_out.bias.fill_(-6.0)  # p = 0.5 once the counter passes 0.3


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("taco"))


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wav")
    rng = np.random.default_rng(1)
    out = {}
    for i, key in enumerate(TEXTS):
        x = (0.1 * rng.normal(size=int(FS * (0.1 + 0.07 * i) + 13 * i))).astype(np.float32)
        sf.write(str(tmp / f"{key}.wav"), x, FS, subtype="FLOAT")
        out[key] = tmp / f"{key}.wav"
    return out


def text2speech(model_files, **conf):
    with contextlib.redirect_stdout(io.StringIO()):
        from espnet2.bin.tts_inference import Text2Speech
    t2s = Text2Speech(*map(str, model_files), device="cpu", always_fix_seed=True, **conf)
    t2s.model.tts.dec.prenet.dropout_rate = 0.0  # ESPnet keeps prenet dropout on at inference; off to compare
    return t2s


def token_ids(t2s, keys):
    return [torch.as_tensor(t2s.preprocess_fn("<dummy>", dict(text=TEXTS[k]))["text"]) for k in keys]


def compare(t2s, batch_out, keys, speeches=None):
    """Batched outputs vs ESPnet's one-at-a-time decode of the same model: values close, lengths equal."""
    lengths = []
    for i, key in enumerate(keys):
        with torch.no_grad():
            ref = t2s(TEXTS[key], speech=None if speeches is None else speeches[i])
        got = batch_out[i]
        assert got["feat_gen"].shape == ref["feat_gen"].shape, key
        torch.testing.assert_close(got["feat_gen"], ref["feat_gen"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got["feat_gen_denorm"], ref["feat_gen_denorm"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(got["att_w"], ref["att_w"], rtol=1e-4, atol=1e-5)
        if speeches is None:
            torch.testing.assert_close(got["prob"], ref["prob"], rtol=1e-4, atol=1e-5)
        lengths.append(len(ref["feat_gen"]))
    return lengths


CONF = dict(threshold=0.5, minlenratio=0.0, maxlenratio=4.0)


def test_free_running_batch_equals_one_at_a_time(model_files):
    t2s = text2speech(model_files, **CONF)
    keys = list(TEXTS)
    out = BatchDecoder(t2s.model, **CONF).decode(token_ids(t2s, keys))
    lengths = compare(t2s, out, keys)
    maxlens = [int((len(TEXTS[k]) + 1) * CONF["maxlenratio"]) for k in keys]
    # the case the batch must get right: some stop on their stop token, some at the maximum length
    assert any(n < m for n, m in zip(lengths, maxlens)) and any(n >= m for n, m in zip(lengths, maxlens))
    assert len(set(lengths)) > 2


def test_repeated_texts_are_decoded_as_alone(model_files):
    """Stage 4 pools a text's decodes in one batch; the encoder runs once per distinct text and feeds every copy."""
    t2s = text2speech(model_files, **CONF)
    keys = ["u3", "u1", "u3", "u5", "u1", "u3"]
    out = BatchDecoder(t2s.model, **CONF).decode(token_ids(t2s, keys))
    compare(t2s, out, keys)


@pytest.mark.parametrize("conf", [dict(threshold=1.01, maxlenratio=3.0),  # never stops: the maximum length
                                  dict(threshold=0.5, maxlenratio=3.0, minlenratio=2.1)])  # not before the minimum
def test_length_limits_match_espnet(model_files, conf):
    t2s = text2speech(model_files, **conf)
    keys = ["u3", "u2", "u5", "u1"]
    out = BatchDecoder(t2s.model, **conf).decode(token_ids(t2s, keys))
    lengths = compare(t2s, out, keys)
    if conf["threshold"] > 1:  # reduction factor 2: the first even length at or past int(n * ratio)
        assert lengths == [-(-int((len(TEXTS[k]) + 1) * 3.0) // 2) * 2 for k in keys]


def test_forced_lengths_ignore_the_stop_token(model_files):
    """The benchmark's forced lengths (a random model never predicts its end): rounded up to the reduction factor."""
    t2s = text2speech(model_files, **CONF)
    out = BatchDecoder(t2s.model, **CONF).decode(token_ids(t2s, ["u1", "u2", "u3"]), num_frames=[7, 30, 1])
    assert [len(o["feat_gen"]) for o in out] == [8, 30, 2]


def test_teacher_forced_batch_equals_one_at_a_time(model_files, wavs):
    t2s = text2speech(model_files, use_teacher_forcing=True)
    keys = list(TEXTS)
    speeches = [torch.from_numpy(sf.read(str(wavs[k]), dtype="float32")[0]) for k in keys]
    out = BatchDecoder(t2s.model).decode(token_ids(t2s, keys), speeches=speeches)
    lengths = compare(t2s, out, keys, speeches=speeches)
    assert len(set(lengths)) == len(keys)


def test_unsupported_options_are_refused(model_files):
    t2s = text2speech(model_files)
    with pytest.raises(EbmError, match="use_att_constraint"):
        BatchDecoder(t2s.model, use_att_constraint=True)
    with pytest.raises(EbmError, match="unknown decoding options"):
        BatchDecoder(t2s.model, beam=3)


def read_lines(path):
    return path.read_text().splitlines()


def test_stage4_entry_point_writes_the_same_layout(model_files, wavs, tmp_path):
    """decode_baseline with --batch_size 3 vs 1: same files, keys in the key file's order, same lengths."""
    text = tmp_path / "text"
    text.write_text("".join(f"{k} {t}\n" for k, t in TEXTS.items()))
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text("".join(f"{k} {wavs[k]}\n" for k in TEXTS))
    keys = ["u4", "u1", "u5", "u3", "u2"]  # not sorted: the output must keep this order
    (tmp_path / "keys").write_text("".join(f"{k}\n" for k in keys))
    conf = tmp_path / "decode.yaml"
    conf.write_text("threshold: 1.01\nmaxlenratio: 2.0\nminlenratio: 0.0\n")  # lengths free of dropout draws
    outs = {}
    for bs in [1, 3]:
        out = tmp_path / f"out{bs}"
        decode_baseline.main(list(map(str, [
            "--model_file", model_files[1], "--train_config", model_files[0], "--inference_config", conf,
            "--text", text, "--wav_scp", wav_scp, "--key_file", tmp_path / "keys",
            "--modes", "teacher_forced,free_running,free_running_sample1", "--output_dir", out,
            "--num_att_plots", "2", "--batch_size", bs])))
        outs[bs] = out
    for mode in ["teacher_forced", "free_running", "free_running_sample1"]:
        a, b = outs[1] / mode, outs[3] / mode
        files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
        assert len([f for f in files if f.startswith("att_ws/")]) == 2
        for sub in ["norm", "denorm"]:
            lines = read_lines(b / sub / "feats.scp")
            assert [line.split()[0] for line in lines] == keys
            for line in lines:
                key, path = line.split()
                x = np.load(path)
                assert x.shape == np.load(str(a / sub / f"{key}.npy")).shape and np.all(np.isfinite(x))
        assert read_lines(a / "speech_shape/speech_shape") == read_lines(b / "speech_shape/speech_shape")
        rtf = [line.split() for line in read_lines(b / "rtf")]
        assert [r[0] for r in rtf] == keys and all(float(r[1]) > 0 for r in rtf)
    # prenet dropout stays on: the sample differs from the seeded decode
    fr = np.load(str(outs[3] / "free_running/norm/u3.npy"))
    assert not np.allclose(fr, np.load(str(outs[3] / "free_running_sample1/norm/u3.npy")))


def test_stage4_entry_point_refuses_the_attention_constraint_in_batches(model_files, tmp_path):
    text = tmp_path / "text"
    text.write_text("u1 a bad cab.\n")
    conf = tmp_path / "decode.yaml"
    conf.write_text("use_att_constraint: true\n")
    with pytest.raises(EbmError, match="use_att_constraint.*--batch_size 1"):
        decode_baseline.main(list(map(str, [
            "--model_file", model_files[1], "--train_config", model_files[0], "--inference_config", conf,
            "--text", text, "--modes", "free_running", "--output_dir", tmp_path / "out", "--batch_size", 4])))
    assert not (tmp_path / "out/free_running/norm/feats.scp").exists()
