#!/usr/bin/env bash
# LJSpeech vocoder: HiFi-GAN V1 trained on the audio of ../tts1 (run its stage 1 first) at its features and split.
# Training to the config's 2.5M steps needs a GPU (days). Without training: --vocoder_tag ljspeech_hifigan.v1
# (parallel-wavegan's pretrained model on the same features; needs a network) or --vocoder_file for a copy.
# Options after ./run.sh override these (e.g. --gta true --pretrain ljspeech_hifigan.v1 to fine-tune on
# Tacotron 2's teacher-forced mels after ../tts1 stage 4).
set -euo pipefail

./voc.sh \
    --tts_dir ../tts1 \
    --train_set tr_no_dev \
    --dev_set dev \
    --eval_sets eval1 \
    --fs 22050 --n_fft 1024 --n_shift 256 --n_mels 80 --fmin 80 --fmax 7600 \
    --conf conf/hifigan.v1.yaml \
    --tts_exp exp/tts_train_tacotron2 \
    "$@"
