#!/usr/bin/env bash
# cathy: 300 real recordings of one US-English speaker (CC0), already in LJSpeech layout; never downloaded.
# Give its location: ./run.sh --db_root /path/to/cathy_dev (or CATHY in db.sh). A worked example of adding a
# corpus: this directory holds only run.sh, local/data.sh and conf/. Stage 6 sweeps the score EBM's steps and
# lambdas around the setting ./search.sh chose on dev (8 steps, lambda 1.5: RESULTS.md); stage 7 chooses again.
set -euo pipefail

./tts.sh \
    --train_set tr_no_dev \
    --dev_set dev \
    --eval_sets eval1 \
    --fs 22050 --n_fft 1024 --n_shift 256 --n_mels 80 --fmin 80 --fmax 7600 \
    --token_type char --cleaner tacotron --g2p none \
    --train_config conf/tuning/train_tacotron2_small.yaml \
    --inference_config conf/decode_tacotron2.yaml \
    --ebm_config conf/tuning/train_ebm_score.yaml \
    --ebm_inference_config conf/decode_ebm_score.yaml \
    --ebm_decode_steps "1 2 3 4 8" --ebm_decode_step_sizes "1.0 1.5 2.0" \
    "$@"
