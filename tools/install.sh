#!/usr/bin/env bash
# Creates (or checks) tools/venv: the pinned stack of tools/requirements.txt plus this package in editable mode.
# Usage: tools/install.sh [--python PYTHON] [--force]
# Re-running with everything installed only verifies the imports (a few seconds).
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top_dir=$(dirname "${tools_dir}")
venv=${EBM_VENV:-${tools_dir}/venv}
python=${PYTHON:-python3}
force=false
while [ $# -gt 0 ]; do
    case "$1" in
        --python) python=$2; shift 2 ;;
        --force) force=true; shift ;;
        -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
        *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
req=${tools_dir}/requirements.txt
stamp=${venv}/.ebm_installed

log() { echo "[tools/install.sh] $*" >&2; }
die() { echo "[tools/install.sh] ERROR: $*" >&2; exit 1; }

# Key of what is installed: the requirements and this script. A change in either reinstalls.
key=$(cat "${req}" "${tools_dir}/install.sh" | sha256sum | cut -c1-16)

verify() {
    "${venv}/bin/python" - "${top_dir}" <<'PY'
import os, sys
import torch, torchaudio, espnet, kaldiio, sentencepiece, yaml, numpy, pytest, espeakng_loader  # noqa: F401
import distillmos  # noqa: F401  (stage 7's predicted MOS; its weights ship inside the wheel)
import espnet2.tasks.tts  # noqa: F401  (imports torchaudio's compiled library: catches a torch mismatch)
import parallel_wavegan.layers  # noqa: F401  (needs the SciPy shim)
import ebm
top = os.path.realpath(sys.argv[1])
if not os.path.realpath(ebm.__file__).startswith(top + os.sep):
    sys.exit(f"ebm is imported from {ebm.__file__}, not from {top}")
PY
}

# A venv shared by several clones (the CI cache) may still list another clone in easy-install.pth, ahead of
# this one; `pip install -e` appends without removing it. Drop every entry that holds an ebm package.
unlink_other_checkouts() {
    "${venv}/bin/python" - <<'PY'
import os, sysconfig
site = sysconfig.get_paths()["purelib"]
pth = os.path.join(site, "easy-install.pth")
if os.path.exists(pth):
    lines = open(pth).read().splitlines()
    keep = [l for l in lines if not os.path.isfile(os.path.join(l.strip(), "ebm", "__init__.py"))]
    with open(pth + ".tmp", "w") as f:
        f.write("".join(l + "\n" for l in keep))
    os.replace(pth + ".tmp", pth)
link = os.path.join(site, "ebm.egg-link")
if os.path.exists(link):
    os.remove(link)
PY
}

# parallel-wavegan 0.6.1 imports scipy.signal.kaiser (gone in SciPy >= 1.13). A .pth line runs at every start of
# the venv's Python (modules and console scripts alike) and installs a lazy shim: ebm/compat.py. The line is a
# no-op while ebm is not importable (during a relink).
write_scipy_shim() {
    local site
    site=$("${venv}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo 'import importlib.util as u; u.find_spec("ebm") and __import__("ebm.compat").compat.install_scipy_shim()' \
        > "${site}/ebm_compat.pth"
}

# g2p_en (ESPnet's English phonemes, as the model zoo's LJSpeech Tacotron 2 uses) needs NLTK's CMU dictionary and
# tagger. Optional: fetched into the venv (on NLTK's default path) when a network allows, never failing the
# install; a recipe that needs them and lacks them stops saying how to install them (ebm.bin.check_g2p).
fetch_nltk_data() {
    local find='import nltk, sys; [nltk.data.find(n) for n in ("corpora/cmudict", "taggers/averaged_perceptron_tagger_eng")]'
    "${venv}/bin/python" -c "${find}" >/dev/null 2>&1 && return 0
    [ ! -e "${venv}/.nltk_tried" ] || return 0  # tried once already (rm the file to try again)
    touch "${venv}/.nltk_tried"
    log "fetching NLTK data for --g2p g2p_en (cmudict, averaged_perceptron_tagger_eng) into ${venv}/nltk_data"
    timeout 300 "${venv}/bin/python" -m nltk.downloader -q -d "${venv}/nltk_data" \
        cmudict averaged_perceptron_tagger_eng >/dev/null 2>&1 || true
    if "${venv}/bin/python" -c "${find}" >/dev/null 2>&1; then
        log "NLTK data installed"
    else
        log "NLTK data not fetched (no network?): optional; recipes with --g2p g2p_en will say how to add it"
    fi
}

if ! ${force} && [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${key}" ]; then
    if verify >/dev/null 2>&1; then
        log "environment ${venv} is up to date"
        fetch_nltk_data
        exit 0
    fi
    log "environment ${venv} is installed but does not import this checkout's ebm: relinking"
    write_scipy_shim
    unlink_other_checkouts
    "${venv}/bin/pip" install --quiet --no-deps --no-build-isolation -e "${top_dir}" \
        || die "pip install -e ${top_dir} failed"
    verify || die "tools/venv does not import; rerun with --force to rebuild it"
    exit 0
fi

command -v "${python}" >/dev/null || die "${python} not found; install Python 3.10 or 3.11, or pass --python"
pyver=$("${python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "${pyver}" in
    3.10|3.11) ;;
    *) die "Python ${pyver} found (${python}); espnet 202511 and torch 2.11.0 need Python 3.10 or 3.11.
       Install one (e.g. pyenv install 3.11) and run: tools/install.sh --python python3.11" ;;
esac

if [ ! -x "${venv}/bin/python" ]; then
    log "creating ${venv} with ${python} (${pyver})"
    "${python}" -m venv "${venv}" || die "python -m venv failed; on Debian/Ubuntu install python${pyver}-venv"
fi

pin() { grep -E "# *step:$1( |$)" "${req}" | sed 's/[[:space:]]*#.*//'; }
step() {  # step NAME [pip options]
    local name=$1; shift
    local specs
    mapfile -t specs < <(pin "${name}")
    log "installing (${name}): ${specs[*]}"
    "${venv}/bin/python" -m pip install --disable-pip-version-check "$@" "${specs[@]}" \
        || die "pip install of ${specs[*]} failed (see above). Check the network to PyPI and free disk space
       (about 6 GB), then rerun tools/install.sh; --force rebuilds from scratch."
}
step pip --quiet
step torch
step main
# xls-r-sqa declares transformers, but DistillMOS uses only its model code, which does not import it; installed,
# transformers would be imported by every ESPnet task (espnet2.layers.create_adapter_fn), about 5 s per process
step mos --no-deps
step pwg --no-build-isolation
log "installing ebm (editable) from ${top_dir}"
"${venv}/bin/python" -m pip install --disable-pip-version-check --quiet --no-deps --no-build-isolation -e "${top_dir}" \
    || die "pip install -e ${top_dir} failed"

write_scipy_shim

log "verifying imports"
verify || die "the installed environment does not import (see above); rerun with --force"
echo "${key}" > "${stamp}"
fetch_nltk_data
log "done: ${venv}"
