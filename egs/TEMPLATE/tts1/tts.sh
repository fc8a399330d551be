#!/usr/bin/env bash
# The one staged recipe shared by every corpus: egs/<corpus>/tts1/run.sh sets corpus options and calls this.
# Read top to bottom: each stage says what it does, where it reads and where it writes.
set -euo pipefail

# log, die, die_with_logs, split_for_jobs, merge_jobs, check_training_threads, stage_timer
. utils/recipe_lib.sh
# espnet_train [--extend F] EXP MODULE [OPTIONS...]: ESPnet's launcher and trainer MODULE (Tacotron 2 or the EBM)
# on the recipe's text, waveforms, shapes, tokens, features and normalisation; --resume true continues from
# EXP/checkpoint.pth on a re-run. Extra OPTIONS (data streams, --config, user args) follow.
espnet_train() {
    local extend=1
    if [ "$1" = --extend ]; then extend=$2; shift 2; fi
    local exp=$1 module=$2 part dset
    shift 2
    local data="" dir shapes
    for part in train valid; do
        if [ ${part} = train ]; then dset=${train_set}; else dset=${dev_set}; fi
        dir=${data_feats}/${dset}; shapes=${stats_dir}/${part}
        # stage 5 with --ebm_train_hyps trains on an expanded list (one entry per text and hypothesis)
        if [ ${part} = train ] && [ -n "${train_list_dir:-}" ]; then dir=${train_list_dir}; shapes=${train_list_dir}; fi
        data+=" --${part}_data_path_and_name_and_type ${dir}/text,text,text"
        data+=" --${part}_data_path_and_name_and_type ${dir}/wav.scp,speech,sound"
        data+=" --${part}_shape_file ${shapes}/text_shape --${part}_shape_file ${shapes}/speech_shape"
    done
    # a checkpoint.pth left unloadable by a kill is moved aside; training resumes from the newest loadable epoch
    ${python} -m ebm.bin.check_checkpoint "${exp}" || die "cannot prepare ${exp} for resuming"
    # A training that has ended (by the early-stopping rule or at its epoch cap) is not trained further on a re-run:
    # ESPnet's trainer would train one more epoch before it checks the rule again. With --extend, a training that
    # the rule stopped goes on in up to two more runs of the trainer: to the convergence check's epoch (two thirds
    # of the way), then to the epoch that training_state names (and one that trains nothing, if a kill came between
    # the check's epoch and the trainer's averaging of its models).
    local config="" i state status reason more keep pass passes=1 args=("$@") _f _d
    for i in "${!args[@]}"; do [ "${args[$i]}" != --config ] || config=${args[$((i + 1))]}; done
    [ "${extend}" = 1 ] || passes=4
    for pass in $(seq $((passes + 1))); do
        state=$(${python} -m ebm.bin.training_state --exp "${exp}" --config "${config}" --args "$*" --extend "${extend}") \
            || die "cannot tell whether the training in ${exp} has finished (see above)"
        IFS=$'\t' read -r status reason more keep <<< "${state}"  # more: trainer options to the next stop, if any
        if [ "${status}" = finished ]; then
            log "${exp}: ${reason}"
            [ ${pass} -gt 1 ] || log "${exp}: not trained further (raise max_epoch, patience or the extension to train on)"
            return 0
        fi
        log "${exp}: ${reason}"
        [ ${pass} -le ${passes} ] || return 0
        _d=${exp}/at_two_thirds
        if [ -n "${keep}" ] && [ ! -d "${_d}" ]; then
            # Before training on overwrites them, keep the models selected at the check's epoch, so that the model
            # trained 50% longer can be checked against them (stages 4 and 7 decode and score both on dev). The
            # trainer writes its averages only when it ends, so until the next run ends they are still these.
            rm -rf "${_d}.tmp" && mkdir "${_d}.tmp" || die "cannot write ${_d}.tmp"
            for _f in "${exp}"/*.ave.pth "${exp}"/*.best.pth; do
                [ ! -e "${_f}" ] || cp -L "${_f}" "${_d}.tmp/" || die "cannot copy ${_f} to ${_d}.tmp"
            done
            echo "${keep}" > "${_d}.tmp/epoch"
            mv "${_d}.tmp" "${_d}"
            log "${exp}: the models selected at epoch ${keep} are kept in ${_d} for the convergence check"
        fi
        check_training_threads "${exp}"
        # shellcheck disable=SC2086
        ${python} -m espnet2.bin.launch --cmd "${cuda_cmd}" --log "${exp}/train.log" --ngpu "${ngpu}" \
            --num_nodes "${num_nodes}" --init_file_prefix "${exp}/.dist_init_" \
            --multiprocessing_distributed true -- \
            ${python} -m "${module}" \
                --use_preprocessor true ${token_opts} ${feats_opts} \
                --normalize global_mvn --normalize_conf "stats_file=${stats_dir}/train/feats_stats.npz" \
                ${data} --resume true --use_tensorboard true --output_dir "${exp}" "$@" ${more} \
            || die_with_logs "training failed (log: ${exp}/train.log)" "${exp}/train.log"
    done
}
SECONDS=0

# General
stage=0               # first stage to run
stop_stage=7          # last stage to run
nj=2                  # parallel jobs for data, statistics and decoding stages
ngpu=0                # GPUs for training (0: CPU)
gpu_inference=false   # stages 4 and 6 decode on a GPU (one per job, through cuda_cmd), as in ESPnet's recipes
python=python3        # the venv's Python (path.sh puts it first on PATH)
dumpdir=dump          # formatted data and token lists
expdir=exp            # statistics, models, decodes, logs

# Data (local/data.sh writes data/<set> for these names)
local_data_opts=""    # extra options for local/data.sh
db_root=""            # where the corpus is or goes (passed to local/data.sh when set)
train_set=""
dev_set=""
eval_sets=""          # space-separated; local/data.sh writes the first, others must exist under data/
on_rate_mismatch=resample  # a wav at another rate than fs: resample (into dump/) or error

# Features: ESPnet's LogMelFbank, the same for the baseline, the EBM and the vocoder
fs=22050
n_fft=1024
n_shift=256
win_length=""         # empty: n_fft
n_mels=80
fmin=80
fmax=7600

# Tokens
token_type=char       # char or phn
cleaner=tacotron      # text cleaner before tokenisation (none to disable)
text_transliterate=false  # true: let the cleaner transliterate characters outside the recipe's language (logged)
g2p=none              # with token_type=phn: espeak_ng_english_us_vits (eSpeak NG, offline)
oov="<unk>"
blank="<blank>"
sos_eos="<sos/eos>"

# Tacotron 2 baseline (stages 3-4): ESPnet's model, trainer and inference
train_config=""       # its config; stage 2 also builds it to collect feature statistics
train_args=""         # extra options for espnet2.bin.tts_train
train_extend=1.5      # the dev-loss rule watches a teacher-forced loss that plateaus while free-running output
                      # still improves: once it stops training at epoch E, train on to ceil(E x this) (1: stop at E),
                      # keeping the model at two thirds of that for stage 7's convergence check
tts_exp=""            # default: ${expdir}/tts_<config name>, or ${expdir}/tts_imported for an imported baseline
num_nodes=1           # nodes for training (espnet2.bin.launch)
baseline_model_file=""  # import an ESPnet Tacotron 2 instead of training it: a packed model (.zip, as ESPnet's
                        # model zoo and pack write it), its unpacked directory, or a .pth with --baseline_config
baseline_config=""      # the config.yaml of a .pth
baseline_model_tag=""   # or a model zoo name (e.g. kan-bayashi/ljspeech_tacotron2): espnet_model_zoo fetches it.
                        # The recipe adopts the model's tokens, cleaner, g2p and statistics (${expdir}/baseline_import)
inference_config=""   # decoding options of the baseline (threshold, maxlenratio, minlenratio, attention constraint)
inference_model=train.loss.ave.pth  # which checkpoint of ${tts_exp} decodes (ESPnet's choice for TTS: the last
                                    # epochs, averaged; the config's best_model_criterion must list train loss)
inference_args=""     # extra options for espnet2.bin.tts_inference
decode_seed=0         # free-running decodes are seeded: prenet dropout stays on at inference
decode_batch_size=16  # utterances stage 4 decodes together (ebm.batch_decoding); 1: ESPnet's one at a time
baseline_num_samples=0  # extra stochastic free-running samples per utterance (negatives), seeds 1..N
length_tolerance=0.2  # free-running decodes whose length is off the reference by more are reported

# EBM (stage 5): the energy network, trained by ESPnet's trainer through ebm.task.EBMTask
ebm_config=""         # conf/tuning/train_ebm_*.yaml: network, negative samplers, criteria, optimiser
ebm_args=""           # extra options for ebm.bin.ebm_train
ebm_exp=""            # default: ${expdir}/ebm_<config name>
ebm_streams="teacher_forced free_running"  # stage 4 decodes given to the EBM (as tf_feats, fr_feats)
ebm_train_hyps=""     # N: also train on stage 4's free-running samples 1..N, one entry per (text, hypothesis)
                      # (ebm.bin.expand_hypotheses; needs --baseline_num_samples >= N); empty: the config's train_hyps

# Langevin decoding (stage 6)
ebm_inference_config=""   # conf/decode_ebm.yaml: LangevinSampler options
ebm_inference_model=valid.refine_gain.best.pth  # which checkpoint of ${ebm_exp} decodes
ebm_init=free_running     # initial hypotheses: a stage 4 decode mode (free_running or teacher_forced)
ebm_decode_steps=""       # sweep: one decode directory per step count (e.g. "1 10 100 300"); empty: the config's
ebm_decode_step_sizes=""  # sweep: ... and per lambda (e.g. "0.01 0.1"); empty: the config's
ebm_decode_sigmas=""      # sweep: ... and per noise scale sigma (e.g. "0 1"; 1 = the paper's rule); empty: the config's
ebm_decode_drift_min_bins=""  # sweep: ... and per first mel bin the drift moves (drift_min_bin, e.g. "0 40"); empty: the config's
ebm_decode_min_bins=""    # old name of --ebm_decode_drift_min_bins (accepted with a warning)
ebm_decode_noise_level_maxs=""  # sweep: ... and per starting noise level of an annealed chain (noise-conditional
                          # EBMs, e.g. "0.3 0.6 1.0"); empty: the config's
ebm_decode_like=""        # DECODE_DIR of an earlier stage 6: decode the sets with its settings (DECODE_DIR/settings.yaml:
                          # sampler, EBM, experts) into DECODE_DIR/<set>, instead of the sweep above
ebm_decode_sets=""        # sets stage 6 decodes; empty: dev and eval (search.sh decodes dev only, then eval at its choice)
ebm_experts=""            # product of experts: "EXPDIR:WEIGHT ..." other EBMs whose weighted energies are added to
ebm_weight=1.0            # ... this weight times ${ebm_exp}'s; decodes go to ${expdir}/ebm_poe_<names>/ (own RESULTS rows)

# Vocoding and evaluation (stage 7)
vocoder_file=""           # parallel-wavegan .pkl with config.yml and stats.h5 beside it (egs/<corpus>/voc1); empty: Griffin-Lim
griffin_lim_iters=32
f0min=40                  # F0 search range of the pitch metrics (WORLD harvest), Hz; as ESPnet's evaluate_f0.py,
f0max=800                 # set it to the speaker's to spare the tracker octave errors; a change rescores every system
eval_ebm_decodes=""       # Langevin decode dirs to compare; empty: every ${expdir}/ebm_*/decode_langevin*_from_*
eval_every_setting=false  # true: vocode and score eval at every setting, not only at the ones dev chose
gv_scales="1.25 1.5 1.75" # control rows: Tacotron 2 with each mel bin's variance scaled (ebm.bin.gv_postfilter); "": none
results=RESULTS.md        # the comparison table; RESULTS.json beside it, plots in ${expdir}/results_<vocoder>/

help_message=$(cat <<EOF
Usage: $0 --train_set <name> --dev_set <name> --eval_sets "<names>" [options]
  Stages: 0 corpus (local/data.sh)  1 Kaldi data dirs + audio check  2 tokens + feature statistics
          3 Tacotron 2 baseline (train, or import with --baseline_model_file)  4 baseline decoding
          5 EBM training  6 Langevin decoding  7 vocoding and evaluation against Tacotron 2 (RESULTS.md)
Options (--name value; dashes or underscores):
  --stage, --stop_stage ${stage} ${stop_stage}   --nj ${nj}   --ngpu ${ngpu}   --gpu_inference ${gpu_inference}
  --db_root DIR   --local_data_opts "..."   --on_rate_mismatch resample|error
  --fs ${fs} --n_fft ${n_fft} --n_shift ${n_shift} --n_mels ${n_mels} --fmin ${fmin} --fmax ${fmax}
  --token_type char|phn   --cleaner tacotron|none   --g2p none|espeak_ng_english_us_vits   --text_transliterate false
  --train_config FILE   --train_args "..."   --train_extend ${train_extend}   --baseline_model_file ZIP|DIR|PTH (--baseline_config YAML)
  --baseline_model_tag NAME (a model zoo name; needs a network and espnet_model_zoo)
  --inference_config FILE   --inference_model ${inference_model}   --baseline_num_samples N   --decode_batch_size ${decode_batch_size}
  --ebm_config FILE   --ebm_args "..."   --ebm_streams "${ebm_streams}"   --ebm_train_hyps N
  --ebm_inference_config FILE   --ebm_inference_model ${ebm_inference_model}   --ebm_init ${ebm_init}
  --ebm_decode_steps "1 10 100 300"   --ebm_decode_step_sizes "0.01 0.1"   --ebm_decode_sigmas "0 1"
  --ebm_decode_drift_min_bins "0 40"   --ebm_decode_noise_level_maxs "0.3 0.6"   --ebm_decode_sets "dev"   --ebm_decode_like DECODE_DIR   --ebm_experts "exp/ebm_other:0.3" --ebm_weight 0.7
  --vocoder_file PKL (default: Griffin-Lim)   --f0min ${f0min} --f0max ${f0max}   --eval_ebm_decodes "DIR..."
  --gv_scales "${gv_scales}" (variance-scaled Tacotron 2, the control; "" for none)   --eval_every_setting ${eval_every_setting}
  --results ${results}
  --dumpdir ${dumpdir}   --expdir ${expdir}
EOF
)

log "$0 $*"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

[ $# -eq 0 ] || die "unexpected arguments: $* (options are --name value)"
if [ -n "${ebm_decode_min_bins}" ]; then
    [ -z "${ebm_decode_drift_min_bins}" ] || die "--ebm_decode_min_bins is the old name of --ebm_decode_drift_min_bins: give only the new one"
    log "WARNING: --ebm_decode_min_bins is now --ebm_decode_drift_min_bins (same meaning); rename it"
    ebm_decode_drift_min_bins=${ebm_decode_min_bins}
fi
[ -n "${train_set}" ] && [ -n "${dev_set}" ] && [ -n "${eval_sets}" ] \
    || die "--train_set, --dev_set and --eval_sets are required (set them in run.sh)"
[ -n "${win_length}" ] || win_length=${n_fft}
# An imported baseline (packed, unpacked, .pth + config, or a zoo name) goes to ${baseline_dir} before any stage:
# a model on other features is refused at once, and the recipe reads text as the model does (its token_type,
# cleaner and g2p replace the recipe's; stage 2 adopts its token list and statistics).
baseline_dir=""
if { [ -n "${baseline_model_file}" ] || [ -n "${baseline_model_tag}" ]; } && [ "${stop_stage}" -ge 1 ]; then
    baseline_dir=${expdir}/baseline_import
    ${python} -m ebm.bin.import_baseline --model_file "${baseline_model_file}" --config "${baseline_config}" \
        --model_tag "${baseline_model_tag}" --download_dir downloads/espnet_model_zoo --output_dir "${baseline_dir}" \
        --fs "${fs}" --n_fft "${n_fft}" --n_shift "${n_shift}" --win_length "${win_length}" --n_mels "${n_mels}" \
        --fmin "${fmin}" --fmax "${fmax}"
    _recipe_frontend="${token_type} ${cleaner} ${g2p}"
    read -r token_type cleaner g2p < "${baseline_dir}/frontend"
    [ "${_recipe_frontend}" = "${token_type} ${cleaner} ${g2p}" ] || log "the imported model's text front end" \
        "replaces the recipe's (${_recipe_frontend}): token_type ${token_type}, cleaner ${cleaner}, g2p ${g2p}"
fi
if [ "${gpu_inference}" = true ]; then  # the decoders of stages 4 and 6 (parse_options.sh checked the value)
    infer_cmd=${cuda_cmd}; infer_ngpu=1
else
    infer_cmd=${decode_cmd}; infer_ngpu=0
fi
if [ "${token_type}" = phn ] && [ "${g2p}" = none ]; then
    die "--token_type phn needs --g2p (offline: espeak_ng_english_us_vits)"
fi
if [ "${g2p}" != none ] && [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 1 ]; then
    ${python} -m ebm.bin.check_g2p --g2p "${g2p}"  # stages 1-6 tokenise text: say what to install, if anything
fi

eval_set=${eval_sets%% *}
all_sets="${train_set} ${dev_set} ${eval_sets}"
data_feats=${dumpdir}/raw
if [ "${token_type}" = char ]; then token_tag=char; else token_tag=${token_type}_${g2p}; fi
token_listdir=${dumpdir}/token_list/${token_tag}
token_list=${token_listdir}/tokens.txt
stats_dir=${expdir}/tts_stats_raw_${token_tag}_${cleaner}
[ -n "${ebm_exp}" ] || ebm_exp=${expdir}/ebm_$(basename "${ebm_config:-ebm}" .yaml)
if [ -z "${tts_exp}" ]; then
    if [ -n "${baseline_dir}" ]; then
        tts_exp=${expdir}/tts_imported
    else
        tts_exp=${expdir}/tts_$(basename "${train_config:-baseline}" .yaml)
    fi
fi

# Options every ESPnet call shares: tokens and features. Kept in one place so that the baseline, the EBM and the
# statistics see the same text and the same mel.
token_opts="--token_type ${token_type} --token_list ${token_list} --cleaner ${cleaner} --g2p ${g2p}"
feats_opts="--feats_extract fbank --feats_extract_conf fs=${fs} --feats_extract_conf n_fft=${n_fft}"
feats_opts+=" --feats_extract_conf hop_length=${n_shift} --feats_extract_conf win_length=${win_length}"
feats_opts+=" --feats_extract_conf n_mels=${n_mels} --feats_extract_conf fmin=${fmin} --feats_extract_conf fmax=${fmax}"
# The same features for ebm's own entry points (ebm.vocoder.FeatureSettings' options).
feats_cli_opts="--fs ${fs} --n_fft ${n_fft} --n_shift ${n_shift} --win_length ${win_length} --n_mels ${n_mels}"
feats_cli_opts+=" --fmin ${fmin} --fmax ${fmax}"

if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ]; then
    stage_timer 0
    log "Stage 0: corpus: local/data.sh --stage 0 (download or generate)"
    _opts=()  # an array: a --db_root with spaces stays one argument
    [ -z "${db_root}" ] || _opts+=(--db_root "${db_root}")
    # shellcheck disable=SC2086
    local/data.sh --stage 0 --stop_stage 0 "${_opts[@]}" ${local_data_opts}
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    stage_timer 1
    log "Stage 1: Kaldi data dirs: local/data.sh --stage 1 -> data/{${all_sets// /,}}"
    # The previous formatted sets go first: if any check below fails, stage 2 must find nothing, not stale sets.
    for dset in ${all_sets}; do rm -rf "${data_feats:?}/${dset}"; done
    _opts=()  # an array: a --db_root with spaces stays one argument
    [ -z "${db_root}" ] || _opts+=(--db_root "${db_root}")
    # shellcheck disable=SC2086
    local/data.sh --stage 1 --stop_stage 1 "${_opts[@]}" ${local_data_opts} \
        --train_set "${train_set}" --dev_set "${dev_set}" --eval_set "${eval_set}"

    _texts=""
    for dset in ${all_sets}; do
        [ -f "data/${dset}/spk2utt" ] || utils/utt2spk_to_spk2utt.pl "data/${dset}/utt2spk" > "data/${dset}/spk2utt"
        utils/validate_data_dir.sh "data/${dset}"
        _texts+=" data/${dset}/text"
    done
    log "checking transcripts (cleaner ${cleaner}, ${token_type}, --text_transliterate ${text_transliterate}):${_texts}"
    # shellcheck disable=SC2086
    ${python} -m ebm.bin.check_text --cleaner "${cleaner}" --token_type "${token_type}" --g2p "${g2p}" \
        --transliterate "${text_transliterate}" ${_texts}

    for dset in ${all_sets}; do
        src=data/${dset}
        dst=${data_feats}/${dset}
        log "checking and formatting audio of ${src} at ${fs} Hz -> ${dst} (${nj} jobs)"
        # Built under a temporary name and renamed at the end: a failed check leaves no set that looks formatted.
        _tmp=${dst}.tmp
        rm -rf "${_tmp}"
        utils/copy_data_dir.sh "${src}" "${_tmp}"
        _logdir=${_tmp}/logs
        mkdir -p "${_logdir}"
        split_for_jobs "${src}/wav.scp" "${_logdir}/wav"
        ${decode_cmd} JOB=1:"${_nj}" "${_logdir}/format_wav.JOB.log" \
            ${python} -m ebm.bin.format_wav_scp --fs "${fs}" --on_rate_mismatch "${on_rate_mismatch}" \
                --audio_dir "${data_feats}/audio/${dset}" "${_logdir}/wav.JOB.scp" "${_logdir}/formatted.JOB" \
            || die_with_logs "audio check failed for ${src} (logs: ${_logdir}/format_wav.*.log)" \
                "${_logdir}"/format_wav.*.log
        for f in wav.scp utt2num_samples; do
            for n in $(seq "${_nj}"); do cat "${_logdir}/formatted.${n}/${f}"; done | sort > "${_tmp}/${f}"
        done
        utils/validate_data_dir.sh "${_tmp}"
        mv "${_tmp}" "${dst}"
        log "$(wc -l < "${dst}/wav.scp") utterances in ${dst}"
    done
    _dirs=""
    for dset in ${all_sets}; do _dirs+=" ${data_feats}/${dset}"; done
    log "checking speaking rates and lengths (warnings only; listed in ${data_feats}/speaking_rate_outliers.txt)"
    # shellcheck disable=SC2086
    ${python} -m ebm.bin.check_speaking_rate --fs "${fs}" --n_shift "${n_shift}" --cleaner "${cleaner}" \
        ${inference_config:+--inference_config "${inference_config}"} \
        --report "${data_feats}/speaking_rate_outliers.txt" ${_dirs}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    stage_timer 2
    for dset in ${all_sets}; do
        for f in text wav.scp utt2num_samples; do
            [ -f "${data_feats}/${dset}/${f}" ] \
                || die "${data_feats}/${dset}/${f} is missing: run stage 1 first (--stage 1) and let it finish"
        done
    done
    mkdir -p "${token_listdir}"
    if [ -n "${baseline_dir}" ]; then
        # The imported model's tokens, in its order (its embedding's rows): every transcript must be within them.
        log "Stage 2: token list of the imported model (${token_type}, cleaner ${cleaner}, g2p ${g2p}) -> ${token_list}"
        log "$(wc -l < "${baseline_dir}/tokens.txt") tokens; checking that ${all_sets} tokenise within them"
        _texts=""
        for dset in ${all_sets}; do _texts+=" ${data_feats}/${dset}/text"; done
        # shellcheck disable=SC2086
        ${python} -m ebm.bin.check_baseline --model_file "${baseline_dir}/model.pth" \
            --config "${baseline_dir}/config.yaml" ${token_opts} --token_list "${baseline_dir}/tokens.txt" \
            ${feats_cli_opts} --text ${_texts}
        cp "${baseline_dir}/tokens.txt" "${token_list}.tmp"
        mv "${token_list}.tmp" "${token_list}"
    else
        log "Stage 2: token list (${token_type}, cleaner ${cleaner}, g2p ${g2p}) -> ${token_list}"
        # <blank> first and <unk> second as ESPnet's TTS recipes do; <sos/eos> last.
        ${python} -m espnet2.bin.tokenize_text \
            --token_type "${token_type}" --cleaner "${cleaner}" --g2p "${g2p}" \
            --input "${data_feats}/${train_set}/text" --output "${token_list}.tmp" --field 2- \
            --write_vocabulary true --add_symbol "${blank}:0" --add_symbol "${oov}:1" --add_symbol "${sos_eos}:-1"
        mv "${token_list}.tmp" "${token_list}"
        log "$(wc -l < "${token_list}") tokens; checking that ${dev_set} and ${eval_sets} need no others"
        _texts=""
        for dset in ${dev_set} ${eval_sets}; do _texts+=" ${data_feats}/${dset}/text"; done
        # shellcheck disable=SC2086
        ${python} -m ebm.bin.check_text --cleaner "${cleaner}" --token_type "${token_type}" --g2p "${g2p}" \
            --transliterate "${text_transliterate}" --token_list "${token_list}" ${_texts}
    fi
    log "Stage 2: does the mel band (--fmin ${fmin}) cover the speaker's F0? (a warning if not)"
    # shellcheck disable=SC2086
    ${python} -m ebm.bin.check_mel_band --wav_scp "${data_feats}/${train_set}/wav.scp" ${feats_cli_opts} \
        --f0min "${f0min}" --f0max "${f0max}"

    [ -n "${train_config}" ] || die "--train_config is required for stage 2 (the baseline's model config)"
    log "Stage 2: feature statistics with ESPnet's collect_stats (${nj} jobs) -> ${stats_dir}"
    rm -f "${stats_dir}/logdir"/train.*.scp "${stats_dir}/logdir"/valid.*.scp  # a previous --nj may have made more
    for part in train valid; do
        if [ ${part} = train ]; then dset=${train_set}; else dset=${dev_set}; fi
        split_for_jobs "${data_feats}/${dset}/wav.scp" "${stats_dir}/logdir/${part}"
    done
    # The key files decide which utterances each job reads; train and valid are split the same number of ways.
    _nj=$(find "${stats_dir}/logdir" -maxdepth 1 -name 'valid.*.scp' | wc -l)
    _ntrain=$(find "${stats_dir}/logdir" -maxdepth 1 -name 'train.*.scp' | wc -l)
    [ "${_nj}" -eq "${_ntrain}" ] || die "fewer dev utterances than jobs: run with --nj ${_nj}"
    rm -rf "${stats_dir}/logdir"/stats.*
    # shellcheck disable=SC2086
    ${train_cmd} JOB=1:"${_nj}" "${stats_dir}/logdir/stats.JOB.log" \
        ${python} -m espnet2.bin.tts_train \
            --collect_stats true --write_collected_feats false --use_preprocessor true \
            --normalize none --pitch_normalize none --energy_normalize none \
            ${token_opts} ${feats_opts} \
            --train_data_path_and_name_and_type "${data_feats}/${train_set}/text,text,text" \
            --train_data_path_and_name_and_type "${data_feats}/${train_set}/wav.scp,speech,sound" \
            --valid_data_path_and_name_and_type "${data_feats}/${dev_set}/text,text,text" \
            --valid_data_path_and_name_and_type "${data_feats}/${dev_set}/wav.scp,speech,sound" \
            --train_shape_file "${stats_dir}/logdir/train.JOB.scp" \
            --valid_shape_file "${stats_dir}/logdir/valid.JOB.scp" \
            --output_dir "${stats_dir}/logdir/stats.JOB" \
            --config "${train_config}" \
        || die_with_logs "collect_stats failed (logs: ${stats_dir}/logdir/stats.*.log)" "${stats_dir}"/logdir/stats.*.log
    _dirs=""
    for n in $(seq "${_nj}"); do _dirs+=" --input_dir ${stats_dir}/logdir/stats.${n}"; done
    rm -rf "${stats_dir}/train" "${stats_dir}/valid"
    # shellcheck disable=SC2086
    ${python} -m espnet2.bin.aggregate_stats_dirs ${_dirs} --output_dir "${stats_dir}"
    [ -f "${stats_dir}/train/feats_stats.npz" ] || die "no ${stats_dir}/train/feats_stats.npz was written"
    if [ -n "${baseline_dir}" ]; then  # the model normalises its outputs with its own statistics: so does the EBM
        mv "${stats_dir}/train/feats_stats.npz" "${stats_dir}/train/feats_stats_collected.npz"
        cp "${baseline_dir}/feats_stats.npz" "${stats_dir}/train/feats_stats.npz"
        log "Stage 2: ${stats_dir}/train/feats_stats.npz is the imported model's (this corpus': feats_stats_collected.npz)"
    fi
    log "wrote ${stats_dir}/train/feats_stats.npz and shape files under ${stats_dir}/{train,valid}"
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    stage_timer 3
    if [ -n "${baseline_dir}" ]; then
        log "Stage 3: importing the Tacotron 2 ${baseline_model_file:-${baseline_model_tag}} -> ${tts_exp} (no training)"
        # shellcheck disable=SC2086
        ${python} -m ebm.bin.check_baseline --model_file "${baseline_dir}/model.pth" \
            --config "${baseline_dir}/config.yaml" ${token_opts} ${feats_cli_opts}
        mkdir -p "${tts_exp}"
        cp "${baseline_dir}/config.yaml" "${tts_exp}/config.yaml"
        ln -sfn "$(readlink -f "${baseline_dir}/model.pth")" "${tts_exp}/${inference_model}"
    else
        [ -n "${train_config}" ] || die "--train_config is required for stage 3"
        log "Stage 3: training Tacotron 2 (${train_config}) with ESPnet's trainer -> ${tts_exp} (log: ${tts_exp}/train.log)"
        # shellcheck disable=SC2086
        espnet_train --extend "${train_extend}" "${tts_exp}" espnet2.bin.tts_train --config "${train_config}" ${train_args}
    fi
    [ -e "${tts_exp}/${inference_model}" ] || die "${tts_exp}/${inference_model} does not exist after stage 3 (an \
<criterion>.ave.pth is written for each best_model_criterion of ${train_config}: list it there, or pick another \
with --inference_model)"
    log "Stage 3: baseline ready: ${tts_exp}/${inference_model} ($(${python} -m ebm.bin.count_params \
        --config "${tts_exp}/config.yaml" --model_file "${tts_exp}/${inference_model}") parameters)"
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    stage_timer 4
    [ -e "${tts_exp}/${inference_model}" ] || die "no baseline at ${tts_exp}/${inference_model}: run stage 3"
    # decode_with MODEL_DIR SET MODES: the model MODEL_DIR/${inference_model} decodes SET in every mode (nj jobs,
    # seeded) into ESPnet's decode layout, MODEL_DIR/decode_<mode>/SET, and reports decodes that missed their end.
    decode_with() {
        local mdir=$1 dset=$2 modes=$3 _logdir _decodes _dir mode f n
        _logdir=${mdir}/decode_logs/${dset}
        log "Stage 4: decoding ${dset} with ${mdir}/${inference_model} (${modes}; ${nj} jobs) -> ${mdir}/decode_<mode>/${dset}"
        rm -rf "${_logdir}"
        mkdir -p "${_logdir}"
        split_for_jobs "${data_feats}/${dset}/text" "${_logdir}/keys"
        # shellcheck disable=SC2086
        ${infer_cmd} --gpu "${infer_ngpu}" JOB=1:"${_nj}" "${_logdir}/decode.JOB.log" \
            ${python} -m ebm.bin.decode_baseline --ngpu "${infer_ngpu}" --model_file "${mdir}/${inference_model}" \
                --train_config "${tts_exp}/config.yaml" ${inference_config:+--inference_config "${inference_config}"} \
                --text "${data_feats}/${dset}/text" --wav_scp "${data_feats}/${dset}/wav.scp" \
                --key_file "${_logdir}/keys.JOB.scp" --modes "${modes}" --seed "${decode_seed}" \
                --batch_size "${decode_batch_size}" --output_dir "${_logdir}/output.JOB" ${inference_args} \
            || die_with_logs "decoding ${dset} failed (logs: ${_logdir}/decode.*.log)" "${_logdir}"/decode.*.log
        # Merge the jobs into ESPnet's decode layout, one directory per mode.
        _decodes=""
        for mode in ${modes//,/ }; do
            _dir=${mdir}/decode_${mode}/${dset}
            rm -rf "${_dir}"
            mkdir -p "${_dir}"/{norm,denorm,speech_shape,att_ws}
            for f in norm/feats.scp denorm/feats.scp speech_shape/speech_shape rtf; do
                merge_jobs "${_logdir}/output.JOB/${mode}/${f}" "${_dir}/${f}"
            done
            for n in $(seq "${_nj}"); do cp "${_logdir}/output.${n}/${mode}"/att_ws/*.png "${_dir}/att_ws/" 2>/dev/null || true; done
            _decodes+=" --decode ${mode} ${_dir}"
        done
        # shellcheck disable=SC2086
        ${python} -m ebm.bin.report_decode_lengths --text "${data_feats}/${dset}/text" \
            --utt2num_samples "${data_feats}/${dset}/utt2num_samples" --n_shift "${n_shift}" --fs "${fs}" \
            ${_decodes} --tolerance "${length_tolerance}" --train_config "${tts_exp}/config.yaml" \
            ${inference_config:+--inference_config "${inference_config}"}
    }
    _modes=teacher_forced,free_running
    for n in $(seq "${baseline_num_samples}"); do _modes+=",free_running_sample${n}"; done
    for dset in ${train_set} ${dev_set} ${eval_sets}; do
        decode_with "${tts_exp}" "${dset}" "${_modes}"
    done
    # The convergence check: the model selected two thirds of the way through (kept by stage 3 before it trained
    # on) decodes dev the same way, so that stage 7 tells whether the last third of the training still paid.
    if [ -e "${tts_exp}/at_two_thirds/${inference_model}" ]; then
        decode_with "${tts_exp}/at_two_thirds" "${dev_set}" free_running
    fi
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    stage_timer 5
    [ -n "${ebm_config}" ] || die "--ebm_config is required for stage 5"
    [ -f "${ebm_config}" ] || die "--ebm_config ${ebm_config} does not exist"
    [ -n "${ebm_train_hyps}" ] || ebm_train_hyps=$(${python} -c \
        'import sys, yaml; print(int((yaml.safe_load(open(sys.argv[1])) or {}).get("train_hyps", 0)))' "${ebm_config}")
    _opts=""
    for part in train valid; do
        if [ ${part} = train ]; then dset=${train_set}; else dset=${dev_set}; fi
        for mode in ${ebm_streams}; do
            case ${mode} in
                teacher_forced) _name=tf_feats ;;
                free_running) _name=fr_feats ;;
                *) die "--ebm_streams: unknown stream ${mode} (teacher_forced, free_running)" ;;
            esac
            _scp=${tts_exp}/decode_${mode}/${dset}/denorm/feats.scp
            [ -f "${_scp}" ] || die "${_scp} is missing: run stage 4 first (or drop ${mode} from --ebm_streams)"
            # with extra hypotheses, the training streams come from the expanded list made below
            [ ${part} = train ] && [ "${ebm_train_hyps}" -gt 0 ] && _scp=${ebm_exp}/train_hyps/${_name}.scp
            _opts+=" --${part}_data_path_and_name_and_type ${_scp},${_name},npy"
        done
    done
    if [ "${ebm_train_hyps}" -gt 0 ]; then  # one training entry per (text, free-running hypothesis)
        [[ " ${ebm_streams} " == *" free_running "* ]] \
            || die "train_hyps ${ebm_train_hyps} adds free-running hypotheses: put free_running in --ebm_streams"
        _dec=${tts_exp}/decode_free_running
        _hyps="--hyp_scp ${_dec}/${train_set}/denorm/feats.scp"
        for n in $(seq "${ebm_train_hyps}"); do
            _s=${_dec}_sample${n}/${train_set}/denorm/feats.scp
            [ -f "${_s}" ] || die "${_s} is missing: run stage 4 with --baseline_num_samples ${ebm_train_hyps} (or more)"
            _hyps+=" --hyp_scp ${_s}"
        done
        [[ " ${ebm_streams} " != *" teacher_forced "* ]] \
            || _hyps+=" --tf_scp ${tts_exp}/decode_teacher_forced/${train_set}/denorm/feats.scp"
        train_list_dir=${ebm_exp}/train_hyps
        log "Stage 5: ${train_set} with ${ebm_train_hyps} extra free-running hypotheses per text -> ${train_list_dir}"
        # shellcheck disable=SC2086
        ${python} -m ebm.bin.expand_hypotheses --data_dir "${data_feats}/${train_set}" \
            --shape_dir "${stats_dir}/train" ${_hyps} --output_dir "${train_list_dir}"
    fi
    log "Stage 5: training the EBM (${ebm_config}; streams: ${ebm_streams}) -> ${ebm_exp} (log: ${ebm_exp}/train.log)"
    # shellcheck disable=SC2086
    espnet_train "${ebm_exp}" ebm.bin.ebm_train ${_opts} --config "${ebm_config}" ${ebm_args}
    log "Stage 5: done: $(ls "${ebm_exp}"/*.ave.pth 2>/dev/null | tr '\n' ' ')"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    stage_timer 6
    # ebm_decode_set SET INIT GRID LANGEVIN_DECODE_OPTIONS...: decode SET from stage 4's INIT decode into each
    # DECODE_DIR/SET of GRID (lines "DECODE_DIR OVERRIDES", OVERRIDES as langevin_decode --sweep takes them), its
    # settings.yaml beside the sets in DECODE_DIR. One call of ${nj} jobs decodes the whole grid: a job's start
    # (Python, ESPnet, the model) costs more than a few Langevin steps over a small set. Jobs merged per decode.
    ebm_decode_set() {
        local _set=$1 _iname=$2 _grid=$3 _init=${tts_exp}/decode_$2/$1/denorm/feats.scp _logdir _f _dir _ov
        local _dirs=() _sweep=()
        shift 3
        [ -f "${_init}" ] || die "${_init} is missing: run stage 4"
        while read -r _dir _ov; do
            [ -n "${_dir}" ] || continue
            _dirs+=("${_dir}/${_set}")
            _sweep+=(--sweep "${_dir}/${_set}/log/output.JOB" "${_ov:--}")
        done <<< "${_grid}"
        # the grid's job logs and key lists: in the first decode's log dir, linked from the others'
        _logdir=${_dirs[0]}/log
        log "Stage 6: Langevin decoding of ${_set} from ${_iname}: ${#_dirs[@]} decode(s) in one call of ${nj} jobs (logs: ${_logdir}/langevin.*.log) -> $(printf '%s ' "${_dirs[@]}")"
        for _dir in "${_dirs[@]}"; do
            rm -rf "${_dir}"
            mkdir -p "${_dir}/log"
        done
        split_for_jobs "${data_feats}/${_set}/text" "${_logdir}/keys"
        # shellcheck disable=SC2086
        ${infer_cmd} --gpu "${infer_ngpu}" JOB=1:"${_nj}" "${_logdir}/langevin.JOB.log" \
            ${python} -m ebm.bin.langevin_decode --ngpu "${infer_ngpu}" "$@" \
                --text "${data_feats}/${_set}/text" --init_scp "${_init}" --init_name "${_iname}" \
                --key_file "${_logdir}/keys.JOB.scp" "${_sweep[@]}" \
            || die_with_logs "Langevin decoding of ${_set} failed (logs: ${_logdir}/langevin.*.log)" \
                "${_logdir}"/langevin.*.log
        for _dir in "${_dirs[@]}"; do
            [ "${_dir}/log" = "${_logdir}" ] || for _f in "${_logdir}"/langevin.*.log; do
                ln -sfn "$(realpath --relative-to="${_dir}/log" "${_f}")" "${_dir}/log/$(basename "${_f}")"
            done
            mkdir -p "${_dir}"/{norm,denorm}
            for _f in norm/feats.scp denorm/feats.scp energy stopped rtf; do
                merge_jobs "${_dir}/log/output.JOB/${_f}" "${_dir}/${_f}"
            done
            cp "${_dir}/log/output.1/settings.yaml" "$(dirname "${_dir}")/settings.yaml"
            log "$(wc -l < "${_dir}/stopped") of $(wc -l < "${_dir}/rtf") chains stopped early (see ${_dir}/stopped)"
        done
    }
  if [ -n "${ebm_decode_like}" ]; then  # the settings of an earlier decode, read from its settings.yaml
    _settings=${ebm_decode_like}/settings.yaml
    [ -f "${_settings}" ] || die "${_settings} is missing: --ebm_decode_like takes a stage 6 decode directory"
    _like_init=$(${python} -c 'import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get("init") or "")' \
        "${_settings}") || die "cannot read ${_settings}"
    [ -n "${_like_init}" ] || die "${_settings} names no initial hypotheses (init); decode again with stage 6"
    for dset in ${ebm_decode_sets:-${dev_set} ${eval_sets}}; do
        ebm_decode_set "${dset}" "${_like_init}" "${ebm_decode_like} -" --settings "${_settings}"
    done
  else
    [ -e "${ebm_exp}/${ebm_inference_model}" ] || die "no EBM at ${ebm_exp}/${ebm_inference_model}: run stage 5"
    _decode_exp=${ebm_exp}; _poe_opt=""; _poe_tag=""
    [ -n "${ebm_experts}" ] || [ "${ebm_weight}" = 1.0 ] || [ "${ebm_weight}" = 1 ] \
        || die "--ebm_weight ${ebm_weight} weighs this EBM in a product of experts: give --ebm_experts too"
    if [ -n "${ebm_experts}" ]; then  # a product of experts: its own exp dir, its weights in the decode names
        _decode_exp=${expdir}/ebm_poe_$(basename "${ebm_exp}" | sed 's/^ebm_//'); _poe_opt="--weight ${ebm_weight}"
        _poe_tag=_w${ebm_weight}
        for _e in ${ebm_experts}; do
            _edir=${_e%:*}; _ew=${_e##*:}
            [ "${_edir}" != "${_e}" ] || die "--ebm_experts takes EXPDIR:WEIGHT items, got '${_e}'"
            [ -e "${_edir}/${ebm_inference_model}" ] || die "no expert EBM at ${_edir}/${ebm_inference_model}: train it (stage 5)"
            _decode_exp+=+$(basename "${_edir}" | sed 's/^ebm_//'); _poe_tag+=_${_ew}
            _poe_opt+=" --expert ${_edir}/config.yaml ${_edir}/${ebm_inference_model} ${_ew}"
        done
        log "Stage 6: product of experts ${ebm_weight} x ${ebm_exp} + ${ebm_experts} -> ${_decode_exp}"
    fi
    _grid=""  # one line per decode: its directory (a label) and its overrides of the decode config
    for _steps in ${ebm_decode_steps:-config}; do
        for _lambda in ${ebm_decode_step_sizes:-config}; do
            for _sigma in ${ebm_decode_sigmas:-config}; do
              for _minbin in ${ebm_decode_drift_min_bins:-config}; do
               for _nlmax in ${ebm_decode_noise_level_maxs:-config}; do
                _tag=langevin; _ov=""
                [ "${_steps}" = config ] || { _tag+=_steps${_steps}; _ov+=,steps=${_steps}; }
                [ "${_lambda}" = config ] || { _tag+=_lambda${_lambda}; _ov+=,step_size=${_lambda}; }
                [ "${_sigma}" = config ] || { _tag+=_sigma${_sigma}; _ov+=,sigma=${_sigma}; }
                [ "${_minbin}" = config ] || { _tag+=_minbin${_minbin}; _ov+=,drift_min_bin=${_minbin}; }
                [ "${_nlmax}" = config ] || { _tag+=_nlmax${_nlmax}; _ov+=,noise_level_max=${_nlmax}; }
                _ov=${_ov#,}
                _grid+="${_decode_exp}/decode_${_tag}${_poe_tag}_from_${ebm_init} ${_ov:--}"$'\n'
               done
              done
            done
        done
    done
    for dset in ${ebm_decode_sets:-${dev_set} ${eval_sets}}; do
        # shellcheck disable=SC2086
        ebm_decode_set "${dset}" "${ebm_init}" "${_grid}" \
            --model_file "${ebm_exp}/${ebm_inference_model}" --train_config "${ebm_exp}/config.yaml" \
            ${ebm_inference_config:+--config "${ebm_inference_config}"} ${_poe_opt}
    done
  fi
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    stage_timer 7
    # One vocoder for every row; its tag names the outputs, so decodes vocoded with another one are never mixed in.
    if [ -n "${vocoder_file}" ]; then
        [ -f "${vocoder_file}" ] || die "--vocoder_file ${vocoder_file} does not exist"
        _vtag=pwg_$(basename "$(cd "$(dirname "${vocoder_file}")" && pwd)")
    else
        _vtag=griffin_lim
    fi
    _vopts="${feats_cli_opts} --griffin_lim_iters ${griffin_lim_iters}"
    [ -z "${vocoder_file}" ] || _vopts+=" --vocoder_file ${vocoder_file}"
    _gt=${expdir}/analysis_synthesis
    _base=${tts_exp}/decode_free_running
    # The convergence check (dev only): Tacotron 2 as selected two thirds of the way, where stage 4 decoded it
    _two_thirds=""
    [ ! -f "${tts_exp}/at_two_thirds/decode_free_running/${dev_set}/denorm/feats.scp" ] \
        || _two_thirds=${tts_exp}/at_two_thirds/decode_free_running
    if [ -n "${eval_ebm_decodes}" ]; then
        _ebms=${eval_ebm_decodes}
    else
        _ebms=$(find "${expdir}" -mindepth 2 -maxdepth 2 -type d -path "${expdir}/ebm_*/decode_langevin*_from_*" | LC_ALL=C sort)
    fi
    # The control: how much of an EBM's gain plain variance scaling of Tacotron 2's output gets (no text, no energy).
    _controls=""
    for _s in ${gv_scales}; do
        _ctl=${_base}_gv${_s}
        for dset in ${dev_set} ${eval_set}; do
            _in=${_base}/${dset}
            [ -f "${_in}/denorm/feats.scp" ] || die "${_in}/denorm/feats.scp is missing: run stage 4"
            if [ -f "${_ctl}/${dset}/denorm/feats.scp" ] && [ "${_ctl}/${dset}/denorm/feats.scp" -nt "${_in}/denorm/feats.scp" ]; then
                continue
            fi
            log "Stage 7: control: ${_in} with its variance scaled by ${_s} -> ${_ctl}/${dset}"
            ${python} -m ebm.bin.gv_postfilter --input_dir "${_in}" --output_dir "${_ctl}/${dset}" --scale "${_s}" \
                || die "the variance-scaling control failed for ${_ctl}/${dset}"
        done
        _controls+=" ${_ctl}"
    done
    log "Stage 7: vocoder ${_vtag}; systems: analysis-synthesis, Tacotron 2 (${_base}${_two_thirds:+; on dev also two thirds as long, ${_two_thirds}}), $(echo ${_controls} | wc -w) controls, $(echo ${_ebms} | wc -w) Langevin decodes"
    # vocode_set SET SYSTEM...: each system's SET through the vocoder, unless its wavs are newer than its input; the
    # systems to do share one call of ${nj} jobs (a process start and the vocoder's loading cost more than a small
    # set's Griffin-Lim), each system's wavs in its own directory
    vocode_set() {
        local dset=$1 _sys _src _kind _wavdir _logdir _opts=""
        shift
        local _todo=()
        for _sys in "$@"; do
            if [ "${_sys}" = "${_gt}" ]; then
                _src=${data_feats}/${dset}/wav.scp; _kind=wav
            else
                _src=${_sys}/${dset}/denorm/feats.scp; _kind=feats
            fi
            if [ ! -f "${_src}" ] && [ "${dset}" = "${eval_set}" ] && [ "${_sys}" != "${_base}" ] \
                    && [ -f "${_sys}/${dev_set}/denorm/feats.scp" ]; then
                continue  # a dev-only decode (a search setting): it is compared on dev, never on eval
            fi
            [ -f "${_src}" ] || die "${_src} is missing: run the stage that decodes ${_sys}"
            _wavdir=${_sys}/${dset}/wav_${_vtag}
            # Up-to-date outputs (newer than their inputs) are kept: re-running stage 7 only does what changed.
            if [ -f "${_wavdir}/wav.scp" ] && [ "${_wavdir}/wav.scp" -nt "${_src}" ]; then
                log "Stage 7: ${_wavdir} is up to date"
                continue
            fi
            log "Stage 7: vocoding ${_sys}/${dset} -> ${_wavdir}"
            rm -rf "${_wavdir}"
            mkdir -p "${_wavdir}/log"
            _todo+=("${_wavdir}")
            _opts+=" --system ${_kind} ${_src} ${_wavdir}/log/output.JOB"
        done
        [ ${#_todo[@]} -gt 0 ] || return 0
        _logdir=${expdir}/vocode_logs_${_vtag}/${dset}
        rm -rf "${_logdir}"
        mkdir -p "${_logdir}"
        split_for_jobs "${data_feats}/${dset}/text" "${_logdir}/keys"
        log "Stage 7: vocoding ${#_todo[@]} systems on ${dset} (${_nj} jobs; logs: ${_logdir})"
        # shellcheck disable=SC2086
        ${decode_cmd} JOB=1:"${_nj}" "${_logdir}/vocode.JOB.log" \
            ${python} -m ebm.bin.vocode ${_opts} --key_file "${_logdir}/keys.JOB.scp" ${_vopts} \
            || die_with_logs "vocoding ${dset} failed (logs: ${_logdir}/vocode.*.log)" "${_logdir}"/vocode.*.log
        for _wavdir in "${_todo[@]}"; do
            merge_jobs "${_wavdir}/log/output.JOB/wav.scp" "${_wavdir}/wav.scp"
        done
    }
    # score_set SET SYSTEM...: one scoring pass over SET for every system whose scores are older than its wavs or
    # were made with other metric settings (scores_<tag>.settings beside them), so that each reference is analysed
    # once however many Langevin settings are compared. The feature settings frame every metric and give the
    # reference's mel for the vocoder-free mel distance (each system's own mel: its denorm/feats.scp;
    # analysis-synthesis: the reference's).
    _sopts="${feats_cli_opts} --f0min ${f0min} --f0max ${f0max}"
    score_set() {
        local dset=$1 _sys _scores _logdir _mel _opts _t i n
        shift
        local _todo=()
        for _sys in "$@"; do
            _scores=${_sys}/${dset}/scores_${_vtag}.tsv
            [ -f "${_sys}/${dset}/wav_${_vtag}/wav.scp" ] || continue  # a dev-only decode, on eval
            if [ -f "${_scores}" ] && [ "${_scores}" -nt "${_sys}/${dset}/wav_${_vtag}/wav.scp" ] \
                    && [ -f "${_scores%.tsv}.f0.tsv" ] \
                    && [ "$(cat "${_scores%.tsv}.settings" 2>/dev/null)" = "${_sopts}" ]; then
                log "Stage 7: ${_scores} is up to date"
            else
                _todo+=("${_sys}")
            fi
        done
        [ ${#_todo[@]} -gt 0 ] || return 0
        _logdir=${expdir}/score_logs_${_vtag}/${dset}
        log "Stage 7: scoring ${#_todo[@]} systems on ${dset} against ${data_feats}/${dset} (${nj} jobs; logs: ${_logdir})"
        rm -rf "${_logdir}"
        mkdir -p "${_logdir}"
        split_for_jobs "${data_feats}/${dset}/text" "${_logdir}/keys"
        _opts=""
        for i in "${!_todo[@]}"; do
            _mel=${_todo[$i]}/${dset}/denorm/feats.scp
            [ "${_todo[$i]}" != "${_gt}" ] || _mel=reference
            _opts+=" --system ${_todo[$i]}/${dset}/wav_${_vtag}/wav.scp ${_logdir}/scores.${i}.JOB.tsv ${_mel}"
        done
        # shellcheck disable=SC2086
        ${decode_cmd} JOB=1:"${_nj}" "${_logdir}/score.JOB.log" \
            ${python} -m ebm.bin.score_wavs --ref_wav_scp "${data_feats}/${dset}/wav.scp" \
                --key_file "${_logdir}/keys.JOB.scp" ${_sopts} ${_opts} \
            || die_with_logs "scoring ${dset} failed (logs: ${_logdir}/score.*.log)" "${_logdir}"/score.*.log
        # Each system's table and, beside it, its F0 on the reference's frames (the results' pitch comparison
        # on common voiced frames reads these rather than analysing the signals again); the table goes last.
        for i in "${!_todo[@]}"; do
            _scores=${_todo[$i]}/${dset}/scores_${_vtag}.tsv
            for _t in "" .f0; do
                { head -n 1 "${_logdir}/scores.${i}.1${_t}.tsv"
                  for n in $(seq "${_nj}"); do tail -n +2 "${_logdir}/scores.${i}.${n}${_t}.tsv"; done | LC_ALL=C sort
                } > "${_scores%.tsv}${_t}.tsv.tmp"
            done
            echo "${_sopts}" > "${_scores%.tsv}.settings.tmp"
            mv "${_scores%.tsv}.f0.tsv.tmp" "${_scores%.tsv}.f0.tsv"
            mv "${_scores}.tmp" "${_scores}"
            mv "${_scores%.tsv}.settings.tmp" "${_scores%.tsv}.settings"
        done
    }
    # Dev first, every system; eval only reports, so it is vocoded and scored at the settings dev chose (each
    # EBM's and the control's, ebm.bin.choose_on_dev), unless --eval_every_setting true.
    # shellcheck disable=SC2086
    vocode_set "${dev_set}" ${_gt} ${_base} ${_two_thirds} ${_controls} ${_ebms}
    # shellcheck disable=SC2086
    score_set "${dev_set}" ${_gt} ${_base} ${_two_thirds} ${_controls} ${_ebms}
    if ${eval_every_setting} || [ -z "${_controls}${_ebms}" ]; then
        _eval_systems="${_controls} ${_ebms}"
    else
        _opts=""
        for _d in ${_ebms}; do _opts+=" --ebm ${_d}"; done
        for _d in ${_controls}; do _opts+=" --control ${_d}"; done
        # shellcheck disable=SC2086
        _eval_systems=$(${python} -m ebm.bin.choose_on_dev --dev_set "${dev_set}" --vocoder_tag "${_vtag}" \
            --baseline "${_base}" ${_opts} --fs "${fs}" --n_shift "${n_shift}" --f0min "${f0min}" --f0max "${f0max}") \
            || die "choosing the settings to evaluate on ${eval_set} from the dev scores failed (see above)"
        log "Stage 7: on ${eval_set}, the settings chosen on ${dev_set}: $(echo ${_eval_systems})"
    fi
    # shellcheck disable=SC2086
    vocode_set "${eval_set}" ${_gt} ${_base} ${_eval_systems}
    # shellcheck disable=SC2086
    score_set "${eval_set}" ${_gt} ${_base} ${_eval_systems}
    _opts=""
    for _d in ${_ebms}; do _opts+=" --ebm ${_d}"; done
    for _d in ${_controls}; do _opts+=" --control ${_d}"; done
    _params=$(${python} -m ebm.bin.count_params --config "${tts_exp}/config.yaml" --model_file "${tts_exp}/${inference_model}")
    log "Stage 7: writing ${results} and ${results%.md}.json (plots: ${expdir}/results_${_vtag})"
    # shellcheck disable=SC2086
    ${python} -m ebm.bin.make_results --dev_set "${dev_set}" --eval_set "${eval_set}" --vocoder_tag "${_vtag}" \
        --ground_truth "${_gt}" --baseline "${_base}" --baseline_params "${_params}" ${_opts} \
        ${_two_thirds:+--baseline_two_thirds "${_two_thirds}" --baseline_two_thirds_epoch "$(cat "${tts_exp}/at_two_thirds/epoch")"} \
        --ref_wav_scp "${data_feats}/${eval_set}/wav.scp" ${feats_cli_opts} --f0min "${f0min}" --f0max "${f0max}" \
        --title "$(basename "$(dirname "${PWD}")")" --plot_dir "${expdir}/results_${_vtag}" \
        --output_md "${results}" --output_json "${results%.md}.json" \
        --search_log "${results%.md}_search.tsv"
    log "Stage 7: writing the listening page ${expdir}/results_${_vtag}/index.html (audio and mels per eval utterance)"
    # shellcheck disable=SC2086
    ${python} -m ebm.bin.make_listening_page --results_json "${results%.md}.json" --results_md "${results}" \
        --data_dir "${data_feats}/${eval_set}" --eval_set "${eval_set}" --vocoder_tag "${_vtag}" \
        --ground_truth "${_gt}" --baseline "${_base}" ${_opts} ${feats_cli_opts} \
        --title "$(basename "$(dirname "${PWD}")")" --output_dir "${expdir}/results_${_vtag}"
fi

stage_timer end
[ ! -s exp/stage_times.tsv ] || ${python} -m ebm.bin.stage_times exp/stage_times.tsv --run "${_stage_run:-}" >&2
log "Successfully finished stages ${stage}-${stop_stage} [elapsed=${SECONDS}s]"
