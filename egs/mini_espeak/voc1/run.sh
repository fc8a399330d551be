#!/usr/bin/env bash
# mini_espeak vocoder: a tiny HiFi-GAN trained on the audio of ../tts1 (run its stage 1 first) at its features.
# About ten minutes on one CPU core; then ../tts1/run.sh --stage 7 --vocoder_file exp/voc_hifigan_tiny/checkpoint-<N>steps.pkl.
# Options after ./run.sh override these (e.g. --gta true after ../tts1 stage 4).
set -euo pipefail

./voc.sh \
    --tts_dir ../tts1 \
    --train_set tr_no_dev \
    --dev_set dev \
    --eval_sets eval1 \
    --fs 22050 --n_fft 1024 --n_shift 256 --n_mels 80 --fmin 40 --fmax 7600 \
    --conf conf/hifigan_tiny.yaml \
    --tts_exp exp/tts_train_tacotron2_small \
    "$@"
