# Shell helpers shared by the staged recipes (egs/TEMPLATE/*/): sourced, not run. Needs `nj` for split_for_jobs.

# log MESSAGE: timestamped, with the calling script, line and function, on stderr (ESPnet's recipe format).
log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
die() { log "ERROR: $*"; exit 1; }
# die_with_logs MESSAGE LOG...: the failed jobs' own error lines first, so that the user sees which file or
# utterance is wrong without opening logs. Our entry points fail with one "ERROR:" line; other tools (ESPnet,
# parallel-wavegan) with a traceback, of which the tail is shown.
die_with_logs() {
    local msg=$1 f; shift
    for f in "$@"; do
        [ -f "${f}" ] || continue
        if grep -q "^ERROR" "${f}"; then
            grep -h -A 20 "^ERROR" "${f}" | grep -v "^# " | head -n 40 >&2 || true
        elif ! tail -n 1 "${f}" | grep -q "# Ended (code 0)"; then
            grep -v "^# " "${f}" | tail -n 15 >&2 || true
        fi
    done
    die "${msg}"
}
# split_for_jobs SCP PREFIX: PREFIX.1.scp .. PREFIX.N.scp for N = min(nj, lines of SCP); sets _nj to N.
split_for_jobs() {
    local scp=$1 prefix=$2 lines outs="" n
    lines=$(wc -l < "${scp}")
    _nj=$(( nj < lines ? nj : lines ))
    mkdir -p "$(dirname "${prefix}")"
    for n in $(seq "${_nj}"); do outs+=" ${prefix}.${n}.scp"; done
    # shellcheck disable=SC2086
    utils/split_scp.pl "${scp}" ${outs}
}
# merge_jobs PATTERN OUT: the files PATTERN with JOB = 1.._nj (split_for_jobs' count), concatenated and C-sorted
# into OUT through a temporary name, so that an interrupted merge never leaves a complete-looking OUT.
merge_jobs() {
    local pattern=$1 out=$2 n
    for n in $(seq "${_nj}"); do cat "${pattern//JOB/${n}}"; done | LC_ALL=C sort > "${out}.tmp"
    mv "${out}.tmp" "${out}"
}
# check_training_threads EXP: ESPnet's trainer repeats bit for bit at one thread count, not across counts, so a
# training resumed at another OMP_NUM_THREADS than it began with goes on as another model than an uninterrupted run
# trains. EXP/threads keeps the count it began with; a resume at another count is warned about, with the setting
# that repeats the run. (A training begun before this file existed has none, and is not judged.)
check_training_threads() {
    local exp=$1 now=${OMP_NUM_THREADS:-unset} began
    if [ ! -e "${exp}/checkpoint.pth" ]; then  # a training from its first epoch
        mkdir -p "${exp}" && echo "${now}" > "${exp}/threads.tmp" && mv "${exp}/threads.tmp" "${exp}/threads"
    elif [ -s "${exp}/threads" ]; then
        began=$(cat "${exp}/threads")
        [ "${began}" = "${now}" ] || log "WARNING: ${exp} began training at OMP_NUM_THREADS=${began} and resumes at" \
            "${now}: it goes on as another model than an uninterrupted run would train. To repeat a run, resume at" \
            "the count it began with (OMP_NUM_THREADS=${began} ./run.sh ...)."
    fi
}
# stage_timer N: starts stage N's clock and closes the previous stage's; `stage_timer end` closes the last one.
# A closed stage appends its wall time and the machine to exp/stage_times.tsv (python -m ebm.bin.stage_times
# prints a run's table). A stage that fails is never closed, so every line is a stage that finished. The threads
# column is OMP_NUM_THREADS (path.sh: 1 unless set): training repeats bit for bit on one machine at one thread
# count, not across counts, so it is what a rerun must match to train the same models. A table written before
# that column existed gets it, empty for its old rows.
stage_timer() {
    local now
    now=$(date +%s)
    if [ -z "${_stage_run:-}" ]; then
        _stage_run=$(date '+%Y%m%dT%H%M%S')-$$
        _stage_gpus=$( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || true) | sort | uniq -c \
            | awk '{n=$1; $1=""; printf "%s%dx%s", (NR>1?", ":""), n, substr($0,2)}')
    fi
    if [ -n "${_stage_now:-}" ]; then
        mkdir -p exp
        [ -s exp/stage_times.tsv ] \
            || printf 'run\tstage\tseconds\tstarted\thost\tcores\tgpus\tthreads\n' > exp/stage_times.tsv
        if [ "$(head -n 1 exp/stage_times.tsv | awk -F '\t' '{print $NF}')" != threads ]; then
            awk 'BEGIN {FS = OFS = "\t"} {print $0, (NR == 1 ? "threads" : "")}' exp/stage_times.tsv \
                > exp/stage_times.tsv.tmp && mv exp/stage_times.tsv.tmp exp/stage_times.tsv
        fi
        printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n' "${_stage_run}" "${_stage_now}" $((now - _stage_start)) \
            "$(date -d "@${_stage_start}" '+%Y-%m-%dT%H:%M:%S')" "$(hostname)" \
            "$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)" "${_stage_gpus:-none}" "${OMP_NUM_THREADS:-unset}" \
            >> exp/stage_times.tsv
    fi
    _stage_now=$1
    _stage_start=${now}
    [ "$1" != end ] || _stage_now=""
}
