#!/usr/bin/env bash
# LJSpeech 1.1 -> data/{train_set,dev_set,eval_set}.
#   stage 0: find the corpus (--db_root or db.sh's LJSPEECH), or download and extract it there (resumable,
#            sha256-checked; a rerun after an interruption continues where it stopped)
#   stage 1: Kaldi data dirs, split as in ESPnet: ids sorted, last 500 held out, dev = first 250, eval = last 250
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

stage=0
stop_stage=1
db_root=""            # dir holding LJSpeech-1.1/ (or the LJSpeech-1.1 dir itself); empty: db.sh's LJSPEECH
train_set=tr_no_dev
dev_set=dev
eval_set=eval1
# shellcheck disable=SC2034
nj=1                  # accepted for the shared contract; preparing LJSpeech is a single quick pass
num_dev=250
num_eval=250
text_field=normalized # metadata.csv field used as transcript: normalized or raw
url=""                # a mirror of LJSpeech-1.1.tar.bz2 (http(s):// or file://); empty: the official URL

help_message="Usage: $0 [--stage 0] [--stop_stage 1] [--db_root DIR] [--train_set ${train_set}] \
[--dev_set ${dev_set}] [--eval_set ${eval_set}] [--nj N] [--text_field normalized|raw] [--url URL]"

# shellcheck disable=SC1091
[ -f ./path.sh ] && . ./path.sh
# shellcheck disable=SC1091
[ -f ./db.sh ] && . ./db.sh
. utils/parse_options.sh
[ $# -eq 0 ] || { log "ERROR: unexpected arguments: $*"; exit 1; }

# Run the package from this checkout even when it is not pip-installed.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." && pwd)
export PYTHONPATH=${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}

db_root=${db_root:-${LJSPEECH:-downloads}}
corpus_dir=${db_root}/LJSpeech-1.1
# Accept the LJSpeech-1.1 directory itself too: an easy mistake with --db_root.
[ -f "${db_root}/metadata.csv" ] && corpus_dir=${db_root}

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
    if [ -f "${corpus_dir}/metadata.csv" ]; then
        log "Stage 0: using the LJSpeech copy in ${corpus_dir} (no download)"
    else
        log "Stage 0: ${corpus_dir}/metadata.csv not found: downloading LJSpeech 1.1 (2.6 GB) into ${db_root}"
        consts=$(python3 -c 'from ebm.data import ljspeech as l; print(l.LJSPEECH_URL, l.LJSPEECH_SHA256)')
        read -r official_url sha256 <<< "${consts}"
        python3 -m ebm.bin.download_corpus --url "${url:-${official_url}}" --sha256 "${sha256}" \
            --download_dir "${db_root}" --extract_to "${corpus_dir}"
    fi
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data/{${train_set},${dev_set},${eval_set}} from ${corpus_dir}"
    python3 -m ebm.bin.prepare_ljspeech_layout --corpus_dir "${corpus_dir}" --data_dir data \
        --train_set "${train_set}" --dev_set "${dev_set}" --eval_set "${eval_set}" \
        --num_dev "${num_dev}" --num_eval "${num_eval}" --text_field "${text_field}" --spk LJ
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
