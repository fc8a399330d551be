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
