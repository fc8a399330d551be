#!/usr/bin/env bash
# Dev-only search over EBMs and their Langevin settings, then eval at each EBM's dev choice; run from a recipe
# directory after stages 0-4 (./search.sh [--grid conf/search.txt] [run.sh options...]).
#   stage 1: for each grid line, train the EBM (tts.sh stage 5; a finished one resumes at its end) and decode the
#            dev set at every (steps, lambda, sigma) of its line (stage 6 with --ebm_decode_sets <dev>)
#   stage 2: vocode and score everything on dev (stage 7): RESULTS_search.tsv, beside RESULTS.md, lists every
#            setting tried with its training knobs and dev numbers; each EBM's setting is chosen there by the
#            verdict's rule applied to dev
#   stage 3: decode eval at each EBM's chosen setting only, with the settings its dev decode recorded in its
#            settings.yaml (stage 6 with --ebm_decode_like), and score it (stage 7): RESULTS.md's verdict
# The grid file has one line per grid: train config, decode config, then comma-separated steps, lambdas, sigmas
# (`config`: the decode config's value, untagged, as in run.sh's sweep; an EBM may have several lines). Optional
# fields: drift_min_bin=LIST sweeps the first mel bin the drift moves (e.g. drift_min_bin=0,40; the old spelling
# minbin= works too); noise_level_max=LIST sweeps where an annealed chain starts (noise-conditional EBMs, e.g.
# noise_level_max=0.3,0.6); OWN_WEIGHT+EXPERT_TRAIN_CONFIG:WEIGHT[+...] decodes a product of experts instead of the
# EBM alone, e.g. 0.7+conf/tuning/train_ebm_score_tffr.yaml:0.3; each expert must be trained by an earlier line.
# Every other option goes to run.sh unchanged (e.g. --vocoder_file, --nj).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
die() { log "ERROR: $*"; exit 1; }

grid=conf/search.txt
stage=1
stop_stage=3
dev_set=dev
eval_set=eval1
results=RESULTS.md
expdir=exp
run_opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --grid) grid=$2; shift 2 ;;
        --stage) stage=$2; shift 2 ;;
        --stop_stage|--stop-stage) stop_stage=$2; shift 2 ;;
        --dev_set) dev_set=$2; shift 2 ;;
        --eval_set) eval_set=$2; shift 2 ;;
        --results) results=$2; run_opts+=(--results "$2"); shift 2 ;;
        --expdir) expdir=$2; run_opts+=(--expdir "$2"); shift 2 ;;
        --help|-h) sed -n '2,16p' "$0"; exit 0 ;;
        *) run_opts+=("$1"); shift ;;
    esac
done
[ -f "${grid}" ] || die "no search grid ${grid} (see conf/search.txt in egs/mini_espeak/tts1)"

# A product of experts field -> run.sh options (--ebm_weight W --ebm_experts "exp/ebm_<name>:W ...") and the
# exp dir its decodes go to (tts.sh names it ebm_poe_<own name>+<expert names>).
poe_opts() {
    local own=$1 field=$2 item experts="" names
    names=ebm_poe_$(basename "${own}" .yaml)
    for item in $(echo "${field#*+}" | tr '+' ' '); do
        experts+=" ${expdir}/ebm_$(basename "${item%:*}" .yaml):${item##*:}"
        names+=+$(basename "${item%:*}" .yaml)
    done
    echo "${field%%+*}|${experts# }|${names}"
}

# A grid line -> train decode steps lambdas sigmas poe minbin nlmax (the optional fields empty when absent).
parse_line() {
    local field fields
    read -r train decode steps lambdas sigmas fields <<< "$1"
    poe=""; minbin=""; nlmax=""
    [ -n "${sigmas}" ] || die "${grid}: expected at least 5 fields, got: $1"
    for field in ${fields}; do
        case "${field}" in
            drift_min_bin=*) minbin=${field#drift_min_bin=} ;;
            minbin=*) minbin=${field#minbin=} ;;
            noise_level_max=*) nlmax=${field#noise_level_max=} ;;
            *) [ -z "${poe}" ] || die "${grid}: one product of experts per line, got: $1"; poe=${field} ;;
        esac
    done
}

# The grid without comments: "train_config decode_config steps lambdas sigmas [drift_min_bin=LIST]
# [noise_level_max=LIST] [experts]".
mapfile -t lines < <(grep -v '^[[:space:]]*\(#\|$\)' "${grid}")
[ ${#lines[@]} -gt 0 ] || die "${grid} has no grid lines"
for line in "${lines[@]}"; do
    parse_line "${line}"
    [ -z "${minbin}" ] || [[ "${minbin}" =~ ^[0-9]+(,[0-9]+)*$ ]] \
        || die "${grid}: drift_min_bin= takes comma-separated mel bin indices, got: ${minbin}"
    [ -z "${nlmax}" ] || [[ "${nlmax}" =~ ^[0-9.]+(,[0-9.]+)*$ ]] \
        || die "${grid}: noise_level_max= takes comma-separated noise levels, got: ${nlmax}"
    [ -f "${train}" ] || die "${grid}: ${train} does not exist"
    [ -f "${decode}" ] || die "${grid}: ${decode} does not exist"
    if [ -n "${poe}" ]; then
        [[ "${poe}" =~ ^[0-9.]+(\+[^+:]+:[0-9.]+)+$ ]] \
            || die "${grid}: the sixth field is OWN_WEIGHT+EXPERT_TRAIN_CONFIG:WEIGHT[+...], got: ${poe}"
        for item in $(echo "${poe#*+}" | tr '+' ' '); do
            [ -f "${item%:*}" ] || die "${grid}: expert config ${item%:*} does not exist"
        done
    fi
done

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    for line in "${lines[@]}"; do
        parse_line "${line}"
        _poe=()
        if [ -n "${poe}" ]; then
            IFS='|' read -r weight experts _ <<< "$(poe_opts "${train}" "${poe}")"
            _poe=(--ebm_weight "${weight}" --ebm_experts "${experts}")
        fi
        log "Search stage 1: ${train}${poe:+ with experts ${poe}} (decode ${decode}; steps ${steps}; lambda ${lambdas}; sigma ${sigmas}${minbin:+; drift_min_bin ${minbin}}${nlmax:+; noise_level_max ${nlmax}}) on ${dev_set}"
        ./run.sh --stage 5 --stop_stage 6 --ebm_config "${train}" --ebm_inference_config "${decode}" \
            --ebm_decode_steps "${steps//,/ }" --ebm_decode_step_sizes "${lambdas//,/ }" \
            --ebm_decode_sigmas "${sigmas//,/ }" --ebm_decode_drift_min_bins "${minbin//,/ }" \
            --ebm_decode_noise_level_maxs "${nlmax//,/ }" \
            --ebm_decode_sets "${dev_set}" "${_poe[@]}" "${run_opts[@]}"
    done
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Search stage 2: scoring every setting on ${dev_set}"
    ./run.sh --stage 7 --stop_stage 7 "${run_opts[@]}"
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    json=${results%.md}.json
    [ -f "${json}" ] || die "${json} is missing: run search stage 2"
    done_exps=" "
    for line in "${lines[@]}"; do
        parse_line "${line}"
        exp=ebm_$(basename "${train}" .yaml)
        [ -z "${poe}" ] || IFS="|" read -r _ _ exp <<< "$(poe_opts "${train}" "${poe}")"
        [[ "${done_exps}" != *" ${exp} "* ]] || continue  # several grid lines, one EBM: one choice
        done_exps+="${exp} "
        # The dev-chosen decode of this EBM from stage 7's table; its settings.yaml holds the options that made it.
        chosen=$(python3 -c '
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r.get("exp") == sys.argv[2] and r.get("chosen_on_dev")]
print(rows[0]["decode"] if rows else "")' "${json}" "${exp}")
        [ -n "${chosen}" ] || die "${json} has no dev-chosen setting for ${exp}: run search stage 2"
        if [ -f "${expdir}/${exp}/${chosen}/${eval_set}/denorm/feats.scp" ]; then
            log "Search stage 3: ${exp} chose ${chosen} on ${dev_set}; its ${eval_set} decode exists"
            continue
        fi
        log "Search stage 3: ${exp} chose ${chosen} on ${dev_set}: decoding ${eval_set} with its settings"
        ./run.sh --stage 6 --stop_stage 6 --ebm_config "${train}" --ebm_decode_like "${expdir}/${exp}/${chosen}" \
            --ebm_decode_sets "${eval_set}" "${run_opts[@]}"
    done
    ./run.sh --stage 7 --stop_stage 7 "${run_opts[@]}"
fi
log "Successfully finished search stages ${stage}-${stop_stage} [elapsed=${SECONDS}s]"
