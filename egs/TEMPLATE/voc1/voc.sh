#!/usr/bin/env bash
# The staged neural-vocoder recipe shared by every corpus: egs/<corpus>/voc1/run.sh sets corpus options and calls
# this. It trains a parallel-wavegan vocoder (HiFi-GAN, MelGAN, ...) with parallel-wavegan's own tools on exactly
# the features of the sibling TTS recipe (--tts_dir), so that the TTS recipe's stage 7 can use it.
# Read top to bottom: each stage says what it does, where it reads and where it writes.
set -euo pipefail

# log, die, die_with_logs, split_for_jobs
. utils/recipe_lib.sh
# count_dumps DIR: how many dump.N job directories DIR holds (stage 1 writes one per job).
count_dumps() { find "$1" -mindepth 1 -maxdepth 1 -name 'dump.*' -type d | wc -l; }
# latest_checkpoint DIR: the checkpoint-<N>steps.pkl of DIR with the most steps (empty if none).
latest_checkpoint() {
    [ -d "$1" ] || return 0
    find "$1" -maxdepth 1 -name 'checkpoint-*steps.pkl' | sort -V | tail -n 1
}
steps_of() { local b; b=$(basename "$1"); b=${b#checkpoint-}; echo "${b%steps.pkl}"; }
SECONDS=0

# General
stage=1               # first stage to run
stop_stage=4          # last stage to run
nj=2                  # parallel jobs for dumping, normalising and decoding
python=python3        # the venv's Python (path.sh puts it first on PATH)
dumpdir=dump          # parallel-wavegan dumps: ${dumpdir}/<ref|gta_...>/<set>/{raw,norm}/dump.N/<utt>.h5
expdir=exp            # vocoders and their copy-synthesis decodes

# Data: the sibling TTS recipe's formatted audio (its stage 1 writes ${tts_dir}/dump/raw/<set>/wav.scp)
tts_dir=../tts1
train_set=""
dev_set=""
eval_sets=""          # space-separated

# Features: the TTS recipe's ESPnet LogMelFbank settings; --conf must use the same (checked)
fs=22050
n_fft=1024
n_shift=256
win_length=""         # empty: n_fft
n_mels=80
fmin=80
fmax=7600

# Vocoder training (stage 3): parallel-wavegan-train
conf=""               # parallel-wavegan config (conf/*.yaml); its feature settings must equal the ones above
voc_exp=""            # default: ${expdir}/voc_<conf name>, with _gta appended for --gta true
resume=true           # a re-run continues from the newest checkpoint-<N>steps.pkl of ${voc_exp}
pretrain=""           # fine-tune from this checkpoint (config.yml, stats.h5 beside it) or pretrained tag
gta=false             # train on the TTS model's teacher-forced mels (tts1 stage 4) instead of the reference's
tts_exp=""            # with --gta true: the TTS experiment, relative to --tts_dir (exp/tts_<config>)

# A ready vocoder instead of training one (stage 3 imports it, stage 4 decodes with it)
vocoder_tag=""        # a parallel-wavegan pretrained tag (e.g. ljspeech_hifigan.v1); needs a network
vocoder_file=""       # a checkpoint .pkl with config.yml and stats.h5 beside it (e.g. a tag fetched elsewhere)
download_dir=downloads/vocoders  # where --vocoder_tag and a tag given to --pretrain are downloaded
download_timeout=10   # seconds to wait for the network before --vocoder_tag gives up

help_message=$(cat <<EOF
Usage: $0 --train_set <name> --dev_set <name> --eval_sets "<names>" --conf <yaml> [options]
  Stages: 1 dump features (ESPnet LogMelFbank, or --gta teacher-forced mels) in parallel-wavegan's format
          2 statistics (stats.h5) and normalisation  3 training (or import --vocoder_tag/--vocoder_file)
          4 copy-synthesis of dev and eval -> \${voc_exp}/wav_copy/<set>
Options (--name value; dashes or underscores):
  --stage, --stop_stage ${stage} ${stop_stage}   --nj ${nj}   --tts_dir ${tts_dir}
  --fs ${fs} --n_fft ${n_fft} --n_shift ${n_shift} --n_mels ${n_mels} --fmin ${fmin} --fmax ${fmax}
  --conf FILE   --voc_exp DIR   --resume true|false   --pretrain CHECKPOINT|TAG
  --gta true|false --tts_exp exp/tts_<config>
  --vocoder_tag TAG | --vocoder_file CHECKPOINT   --download_dir ${download_dir} --download_timeout ${download_timeout}
  --dumpdir ${dumpdir}   --expdir ${expdir}
EOF
)

log "$0 $*"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

[ $# -eq 0 ] || die "unexpected arguments: $* (options are --name value)"
[ -n "${train_set}" ] && [ -n "${dev_set}" ] && [ -n "${eval_sets}" ] \
    || die "--train_set, --dev_set and --eval_sets are required (set them in run.sh)"
[ -n "${win_length}" ] || win_length=${n_fft}
[ -z "${vocoder_tag}" ] || [ -z "${vocoder_file}" ] || die "give --vocoder_tag or --vocoder_file, not both"
[ -d "${tts_dir}" ] || die "--tts_dir ${tts_dir} does not exist (the TTS recipe whose features the vocoder learns)"
tts_dir=$(cd "${tts_dir}" && pwd)
# Training data: the reference mels, or with --gta the TTS model's teacher-forced mels of the same audio.
if "${gta}"; then
    [ -n "${tts_exp}" ] || die "--gta true needs --tts_exp (the TTS experiment under --tts_dir, e.g. exp/tts_train_tacotron2)"
    train_tag=gta_$(basename "${tts_exp}")
    case ${tts_exp} in /*) tts_exp_dir=${tts_exp} ;; *) tts_exp_dir=${tts_dir}/${tts_exp} ;; esac
else
    train_tag=ref
fi
use_ready=false  # a ready vocoder (tag or file) replaces stages 1-3's training
if [ -n "${vocoder_tag}${vocoder_file}" ]; then use_ready=true; fi
if [ -z "${voc_exp}" ]; then
    if [ -n "${vocoder_tag}" ]; then
        voc_exp=${expdir}/voc_${vocoder_tag}
    elif [ -n "${vocoder_file}" ]; then
        voc_exp=${expdir}/voc_imported
    else
        [ -n "${conf}" ] || die "--conf is required (the parallel-wavegan config, conf/*.yaml)"
        voc_exp=${expdir}/voc_$(basename "${conf}" .yaml)
        if "${gta}"; then voc_exp+=_gta; fi
    fi
fi
stats=${dumpdir}/${train_tag}/${train_set}/stats.h5

feats_opts="--fs ${fs} --n_fft ${n_fft} --n_shift ${n_shift} --win_length ${win_length} --n_mels ${n_mels}"
feats_opts+=" --fmin ${fmin} --fmax ${fmax}"
# parallel-wavegan's progress bars: one line a minute in the logs instead of one per step.
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-60}

# resolve_pretrain: a tag given to --pretrain is downloaded (once) and replaced by its checkpoint; either way the
# checkpoint must come with config.yml and stats.h5 at the recipe's features.
resolve_pretrain() {
    [ -n "${pretrain}" ] || return 0
    if [ ! -e "${pretrain}" ] && [[ "${pretrain}" != */* ]] && [[ "${pretrain}" != *.pkl ]]; then
        log "--pretrain ${pretrain}: a pretrained tag; fetching it into ${download_dir}"
        # shellcheck disable=SC2086
        pretrain=$(${python} -m ebm.bin.fetch_vocoder --tag "${pretrain}" --download_dir "${download_dir}" \
            --timeout "${download_timeout}" ${feats_opts}) || die "cannot use --pretrain (see above)"
    else
        # shellcheck disable=SC2086
        ${python} -m ebm.bin.fetch_vocoder --checkpoint "${pretrain}" ${feats_opts} > /dev/null \
            || die "cannot fine-tune from --pretrain ${pretrain} (see above)"
    fi
}

# dump_set TAG SET [GTA_SCP]: stage 1 for one set -> ${dumpdir}/TAG/SET/raw/dump.N/<utt>.h5
dump_set() {
    local tag=$1 dset=$2 gta_scp=${3:-} dst tmp opts=""
    dst=${dumpdir}/${tag}/${dset}
    tmp=${dst}.tmp
    [ -z "${gta_scp}" ] || opts="--gta_feats_scp ${gta_scp} --gta_tts_config ${tts_exp_dir}/config.yaml"
    log "dumping ${dset} (${gta_scp:-ESPnet LogMelFbank of ${tts_dir}/dump/raw/${dset}/wav.scp}) -> ${dst}/raw"
    # Built under a temporary name and renamed at the end: a failed dump leaves no set that looks dumped.
    rm -rf "${tmp}" "${dst}"
    mkdir -p "${tmp}/logs"
    split_for_jobs "${tts_dir}/dump/raw/${dset}/wav.scp" "${tmp}/logs/keys"
    # shellcheck disable=SC2086
    ${decode_cmd} JOB=1:"${_nj}" "${tmp}/logs/dump.JOB.log" \
        ${python} -m ebm.bin.dump_vocoder_feats "${tts_dir}/dump/raw/${dset}/wav.scp" "${tmp}/raw/dump.JOB" \
            --key_file "${tmp}/logs/keys.JOB.scp" --base_dir "${tts_dir}" ${feats_opts} ${opts} \
        || die_with_logs "dumping ${dset} failed (logs: ${tmp}/logs/dump.*.log)" "${tmp}"/logs/dump.*.log
    mv "${tmp}" "${dst}"
    log "$(find "${dst}/raw" -name '*.h5' | wc -l) utterances in ${dst}/raw"
}

# The sets each stage works on: training data under ${train_tag}, copy-synthesis input (reference mels) under ref.
ref_sets="${dev_set} ${eval_sets}"
if [ "${train_tag}" = ref ]; then ref_sets="${train_set} ${ref_sets}"; fi

if ! "${use_ready}" && [ ${stage} -le 3 ] && [ ${stop_stage} -ge 1 ]; then
    [ -n "${conf}" ] || die "--conf is required (the parallel-wavegan config, conf/*.yaml)"
    log "checking the feature settings of ${conf} against the recipe's"
    # shellcheck disable=SC2086
    ${python} -m ebm.bin.fetch_vocoder --config "${conf}" ${feats_opts} > /dev/null
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    for dset in ${train_set} ${dev_set} ${eval_sets}; do
        [ -f "${tts_dir}/dump/raw/${dset}/wav.scp" ] || die "${tts_dir}/dump/raw/${dset}/wav.scp is missing: \
run the TTS recipe's stage 1 first: (cd ${tts_dir} && ./run.sh --stop-stage 1)"
    done
    if "${use_ready}"; then _sets="${dev_set} ${eval_sets}"; else _sets=${ref_sets}; fi
    log "Stage 1: reference mels (ESPnet LogMelFbank: fs ${fs}, n_fft ${n_fft}, hop ${n_shift}, win ${win_length}, \
${n_mels} mels, ${fmin}-${fmax} Hz) of ${_sets} -> ${dumpdir}/ref"
    for dset in ${_sets}; do dump_set ref "${dset}"; done
    if "${gta}" && ! "${use_ready}"; then
        log "Stage 1: teacher-forced mels of ${tts_exp_dir} for ${train_set} ${dev_set} -> ${dumpdir}/${train_tag}"
        for dset in ${train_set} ${dev_set}; do
            _scp=${tts_exp_dir}/decode_teacher_forced/${dset}/denorm/feats.scp
            [ -f "${_scp}" ] || die "${_scp} is missing: decode ${dset} teacher-forced first: \
(cd ${tts_dir} && ./run.sh --stage 4 --stop-stage 4)"
            dump_set "${train_tag}" "${dset}" "${_scp}"
        done
    fi
fi

if ! "${use_ready}" && [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    _raw=${dumpdir}/${train_tag}/${train_set}/raw
    [ -d "${_raw}" ] || die "${_raw} is missing: run stage 1"
    resolve_pretrain
    if [ -n "${pretrain}" ]; then
        # A fine-tuned vocoder keeps the input normalisation it was trained with.
        _pstats=$(dirname "${pretrain}")/stats.h5
        [ -f "${_pstats}" ] || die "${_pstats} is missing: --pretrain needs the stats.h5 of its training beside it"
        log "Stage 2: fine-tuning from ${pretrain}: its statistics ${_pstats} -> ${stats}"
        cp "${_pstats}" "${stats}"
    else
        log "Stage 2: feature statistics of ${_raw} (parallel-wavegan-compute-statistics) -> ${stats}"
        rm -f "${stats}"
        ${train_cmd} "${dumpdir}/${train_tag}/${train_set}/logs/compute_statistics.log" \
            parallel-wavegan-compute-statistics --config "${conf}" --rootdir "${_raw}" \
                --dumpdir "$(dirname "${stats}")" --verbose 1 \
            || die_with_logs "computing statistics failed" "${dumpdir}/${train_tag}/${train_set}/logs/compute_statistics.log"
        [ -f "${stats}" ] || die "no ${stats} was written"
    fi
    _pairs=""
    for dset in ${ref_sets}; do _pairs+=" ref/${dset}"; done
    if [ "${train_tag}" != ref ]; then _pairs+=" ${train_tag}/${train_set} ${train_tag}/${dev_set}"; fi
    for _pair in ${_pairs}; do
        _dir=${dumpdir}/${_pair}
        [ -d "${_dir}/raw" ] || die "${_dir}/raw is missing: run stage 1"
        _n=$(count_dumps "${_dir}/raw")
        log "Stage 2: normalising ${_dir}/raw with ${stats} (parallel-wavegan-normalize, ${_n} jobs) -> ${_dir}/norm"
        rm -rf "${_dir}/norm" "${_dir}/norm.tmp"
        ${decode_cmd} JOB=1:"${_n}" "${_dir}/logs/normalize.JOB.log" \
            parallel-wavegan-normalize --config "${conf}" --stats "${stats}" --rootdir "${_dir}/raw/dump.JOB" \
                --dumpdir "${_dir}/norm.tmp/dump.JOB" --verbose 1 \
            || die_with_logs "normalising ${_dir} failed (logs: ${_dir}/logs/normalize.*.log)" "${_dir}"/logs/normalize.*.log
        mv "${_dir}/norm.tmp" "${_dir}/norm"
    done
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    if "${use_ready}"; then
        if [ -n "${vocoder_tag}" ]; then
            log "Stage 3: fetching the pretrained vocoder ${vocoder_tag} into ${download_dir} (no training)"
            # shellcheck disable=SC2086
            _ckpt=$(${python} -m ebm.bin.fetch_vocoder --tag "${vocoder_tag}" --download_dir "${download_dir}" \
                --timeout "${download_timeout}" ${feats_opts}) || die "--vocoder_tag ${vocoder_tag} failed (see above)"
        else
            log "Stage 3: importing the vocoder ${vocoder_file} (no training)"
            # shellcheck disable=SC2086
            _ckpt=$(${python} -m ebm.bin.fetch_vocoder --checkpoint "${vocoder_file}" ${feats_opts}) \
                || die "cannot use --vocoder_file ${vocoder_file} (see above)"
        fi
        _src=$(cd "$(dirname "${_ckpt}")" && pwd)
        mkdir -p "${voc_exp}"
        find "${voc_exp}" -maxdepth 1 -type l -name 'checkpoint-*steps.pkl' -delete  # an earlier import's
        for f in "$(basename "${_ckpt}")" config.yml stats.h5; do ln -sfn "${_src}/${f}" "${voc_exp}/${f}"; done
    else
        _max_steps=$(${python} -m ebm.bin.fetch_vocoder --config "${conf}" ${feats_opts})
        for _pair in "${train_tag}/${train_set}" "${train_tag}/${dev_set}"; do
            [ -d "${dumpdir}/${_pair}/norm" ] || die "${dumpdir}/${_pair}/norm is missing: run stage 2"
        done
        _opts=""
        _last=$(latest_checkpoint "${voc_exp}")
        if [ -n "${_last}" ] && ! "${resume}"; then
            die "${voc_exp} already has checkpoints (newest ${_last}): remove them, pick another --voc_exp, or --resume true"
        fi
        if [ -n "${_last}" ] && [ "$(steps_of "${_last}")" -ge "${_max_steps}" ]; then
            log "Stage 3: ${_last} has reached train_max_steps ${_max_steps} of ${conf}: nothing to train"
        else
            if [ -n "${_last}" ]; then
                log "Stage 3: resuming from ${_last}"
                _opts="--resume ${_last}"
            elif [ -n "${pretrain}" ]; then
                resolve_pretrain
                _opts="--pretrain ${pretrain}"
            fi
            mkdir -p "${voc_exp}"
            # The log of an earlier run is kept as train.<N>.log.
            if [ -f "${voc_exp}/train.log" ]; then
                _n=1; while [ -f "${voc_exp}/train.${_n}.log" ]; do _n=$((_n + 1)); done
                mv "${voc_exp}/train.log" "${voc_exp}/train.${_n}.log"
            fi
            log "Stage 3: training the vocoder (${conf}, ${_max_steps} steps${pretrain:+, from ${pretrain}}) on \
${dumpdir}/${train_tag}/${train_set}/norm with parallel-wavegan-train -> ${voc_exp} (log: ${voc_exp}/train.log)"
            # shellcheck disable=SC2086
            ${cuda_cmd} "${voc_exp}/train.log" \
                parallel-wavegan-train --config "${conf}" \
                    --train-dumpdir "${dumpdir}/${train_tag}/${train_set}/norm" \
                    --dev-dumpdir "${dumpdir}/${train_tag}/${dev_set}/norm" \
                    --outdir "${voc_exp}" --verbose 1 ${_opts} \
                || die_with_logs "training failed (log: ${voc_exp}/train.log)" "${voc_exp}/train.log"
        fi
        # The checkpoint directory is self-contained: checkpoint-<N>steps.pkl, config.yml and stats.h5.
        cp "${stats}" "${voc_exp}/stats.h5"
    fi
    _last=$(latest_checkpoint "${voc_exp}")
    [ -n "${_last}" ] || die "no checkpoint-<N>steps.pkl in ${voc_exp} after stage 3"
    # shellcheck disable=SC2086
    ${python} -m ebm.bin.fetch_vocoder --checkpoint "${_last}" ${feats_opts} > /dev/null
    log "Stage 3: vocoder ready: ${_last} (config.yml and stats.h5 beside it; the TTS recipe's --vocoder_file)"
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    _ckpt=$(latest_checkpoint "${voc_exp}")
    [ -n "${_ckpt}" ] || die "no checkpoint-<N>steps.pkl in ${voc_exp}: run stage 3"
    for dset in ${dev_set} ${eval_sets}; do
        _raw=${dumpdir}/ref/${dset}/raw
        [ -d "${_raw}" ] || die "${_raw} is missing: run stage 1"
        _dir=${voc_exp}/wav_copy/${dset}
        _n=$(count_dumps "${_raw}")
        # From the raw (denormalised) mels, normalised by the stats.h5 beside the checkpoint: the way the TTS
        # recipe's stage 7 feeds its decodes to the vocoder.
        log "Stage 4: copy-synthesis of ${dset} with ${_ckpt} (${_n} jobs) -> ${_dir}"
        rm -rf "${_dir}"
        mkdir -p "${_dir}/logs"
        ${decode_cmd} JOB=1:"${_n}" "${_dir}/logs/decode.JOB.log" \
            parallel-wavegan-decode --checkpoint "${_ckpt}" --dumpdir "${_raw}/dump.JOB" --outdir "${_dir}" \
                --normalize-before --verbose 1 \
            || die_with_logs "decoding ${dset} failed (logs: ${_dir}/logs/decode.*.log)" "${_dir}"/logs/decode.*.log
        # parallel-wavegan writes <utt>_gen.wav; the recipes' decodes are <utt>.wav listed in a wav.scp.
        _abs=$(cd "${_dir}" && pwd)
        for f in "${_dir}"/*_gen.wav; do
            _utt=$(basename "${f}" _gen.wav)
            mv "${f}" "${_dir}/${_utt}.wav"
            echo "${_utt} ${_abs}/${_utt}.wav"
        done | sort > "${_dir}/wav.scp"
        log "$(wc -l < "${_dir}/wav.scp") wavs in ${_dir} ($(grep -ho "RTF = [0-9.]*" "${_dir}"/logs/decode.*.log | tr '\n' ' '))"
    done
fi

log "Successfully finished stages ${stage}-${stop_stage} [elapsed=${SECONDS}s]"
