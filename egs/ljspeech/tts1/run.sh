#!/usr/bin/env bash
# LJSpeech 1.1 (13,100 clips, one speaker). Stage 0 downloads it, or uses a copy given by --db_root or db.sh.
# Split as in ESPnet: ids sorted, the last 500 held out, dev = first 250 of them, eval1 = last 250.
# Stage 6 sweeps the score EBM as on cathy, the real-speech recipe searched here (best there: 8 steps, lambda 1.5).
set -euo pipefail

./tts.sh \
    --train_set tr_no_dev \
    --dev_set dev \
    --eval_sets eval1 \
    --fs 22050 --n_fft 1024 --n_shift 256 --n_mels 80 --fmin 80 --fmax 7600 \
    --token_type char --cleaner tacotron --g2p none \
    --train_config conf/tuning/train_tacotron2.yaml \
    --inference_config conf/decode_tacotron2.yaml \
    --ebm_config conf/tuning/train_ebm_score.yaml \
    --ebm_inference_config conf/decode_ebm_score.yaml \
    --ebm_decode_steps "1 2 3 4 8" --ebm_decode_step_sizes "1.0 1.5 2.0" \
    "$@"
