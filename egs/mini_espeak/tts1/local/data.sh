#!/usr/bin/env bash
# mini_espeak: 400 sentences written for this project, spoken by eSpeak NG (en-us) -> data/{train,dev,eval}.
#   stage 0: generate the corpus in LJSpeech layout under ${db_root}/mini_espeak (offline, deterministic; skipped
#            when a complete copy is there)
#   stage 1: Kaldi data dirs: ids sorted, the last 60 held out, dev = first 30, eval = last 30, train = 340
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

stage=0
stop_stage=1
db_root=downloads     # the corpus is generated into ${db_root}/mini_espeak
train_set=tr_no_dev
dev_set=dev
eval_set=eval1
nj=2                  # synthesis processes
num_dev=30
num_eval=30
voice=en-us           # eSpeak NG voice
speed_wpm=""          # speaking rate; empty: the voice's own

help_message="Usage: $0 [--stage 0] [--stop_stage 1] [--db_root ${db_root}] [--train_set ${train_set}] \
[--dev_set ${dev_set}] [--eval_set ${eval_set}] [--nj ${nj}] [--voice ${voice}] [--speed_wpm N]"

# shellcheck disable=SC1091
[ -f ./path.sh ] && . ./path.sh
. utils/parse_options.sh
[ $# -eq 0 ] || { log "ERROR: unexpected arguments: $*"; exit 1; }

corpus_dir=${db_root}/mini_espeak

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
    log "Stage 0: eSpeak NG (${voice}) speaks local/sentences.txt -> ${corpus_dir}"
    python3 -m ebm.bin.make_espeak_corpus --sentences local/sentences.txt --out_dir "${corpus_dir}" \
        --nj "${nj}" --voice "${voice}" ${speed_wpm:+--speed_wpm "${speed_wpm}"}
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data/{${train_set},${dev_set},${eval_set}} from ${corpus_dir}"
    python3 -m ebm.bin.prepare_ljspeech_layout --corpus_dir "${corpus_dir}" --data_dir data \
        --train_set "${train_set}" --dev_set "${dev_set}" --eval_set "${eval_set}" \
        --num_dev "${num_dev}" --num_eval "${num_eval}" --spk espeak
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
