#!/usr/bin/env bash
# LJSpeech 1.1 (13,100 clips, one speaker). Stage 0 downloads it, or uses a copy given by --db_root or db.sh.
# Split as in ESPnet: ids sorted, the last 500 held out, dev = first 250 of them, eval1 = last 250.
#
# The baseline researchers will use is ESPnet's published LJSpeech Tacotron 2, not one trained here (that takes
# days of GPU time). One command imports it, decodes with it, trains the EBM and evaluates the two:
#     ./run.sh --db_root /data/corpora --baseline_model_tag kan-bayashi/ljspeech_tacotron2
# The tag is fetched with espnet_model_zoo (a network, and 'tools/venv/bin/pip install espnet_model_zoo'); offline,
# download the packed model (.zip) elsewhere and give it instead:
#     ./run.sh --db_root /data/corpora --baseline_model_file /path/to/ljspeech_tacotron2.zip
# The recipe adopts the model's text front end (phonemes from g2p_en_no_space, tacotron cleaner: they replace the
# --token_type/--g2p below, logged), its token list and its feature statistics; its features are the ones below
# (checked). g2p_en needs NLTK's cmudict and averaged_perceptron_tagger_eng: tools/install.sh fetches them when it
# can; without them the recipe stops before stage 1 saying how to install them.
# Without either option, stage 3 trains Tacotron 2 on characters here.
# Cost per stage on 2 CPU cores, projected by ebm.bin.benchmark_stages (README.md, "Cost"): 3 the import
# (seconds), 4 about 3 h (batched decoding), 5 about 650 h at train_ebm_score.yaml's 100 x 500 updates (GPU work),
# 6 about 30 min, 7 about 3 h. Each run appends its measured stage times to exp/stage_times.tsv.
# Stage 6 sweeps the score EBM as on cathy, the real-speech recipe searched here (best there: 8 steps, lambda 1.5).
set -euo pipefail

./tts.sh \
    --train_set tr_no_dev \
    --dev_set dev \
    --eval_sets eval1 \
    --fs 22050 --n_fft 1024 --n_shift 256 --n_mels 80 --fmin 80 --fmax 7600 \
    --token_type char --cleaner tacotron --g2p none \
    --train_config conf/tuning/train_tacotron2.yaml \
    --inference_config conf/decode_tacotron2.yaml --decode_batch_size 128 \
    --ebm_config conf/tuning/train_ebm_score.yaml \
    --ebm_inference_config conf/decode_ebm_score.yaml \
    --ebm_decode_steps "1 2 3 4 8" --ebm_decode_step_sizes "1.0 1.5 2.0" \
    "$@"
