# Sourced by every recipe script: activates the project's environment, installing it on first use.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export MAIN_ROOT

if [ ! -f "${MAIN_ROOT}/tools/venv/.ebm_installed" ]; then
    if [ -n "${EBM_NO_INSTALL:-}" ]; then  # set by the tests: a recipe under test must not install 7 GB on its own
        echo "path.sh: ${MAIN_ROOT}/tools/venv is not installed and EBM_NO_INSTALL is set: run tools/install.sh" \
             "(or make -C tools test, which installs it first)" >&2
        return 1 2>/dev/null || exit 1
    fi
    echo "path.sh: ${MAIN_ROOT}/tools/venv is not installed yet: running tools/install.sh (first use only)" >&2
    "${MAIN_ROOT}/tools/install.sh" || { echo "path.sh: the environment could not be installed" >&2; return 1 2>/dev/null || exit 1; }
fi
# shellcheck disable=SC1091
. "${MAIN_ROOT}/tools/venv/bin/activate"

export PATH=${MAIN_ROOT}/utils:${PATH}
# This checkout's package first, whichever checkout the venv's editable install points at (a venv can be shared
# between clones, as CI's cached one is).
export PYTHONPATH=${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
# One thread per process: jobs run side by side, and measured here a second OpenMP thread did not speed up a
# training step while it made steps many times slower whenever another process was busy.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# ESPnet tries to fetch NLTK data for g2p_en at import; we never use g2p_en, and the fetch fails offline.
export NLTK_DATA=${NLTK_DATA:-${MAIN_ROOT}/tools/nltk_data}
# eSpeak NG for --token_type phn: the library and data that the espeakng-loader wheel ships (no apt needed).
if [ -z "${PHONEMIZER_ESPEAK_LIBRARY:-}" ]; then
    eval "$(python3 -c 'import espeakng_loader as e
print(f"export PHONEMIZER_ESPEAK_LIBRARY={e.get_library_path()} ESPEAK_DATA_PATH={e.get_data_path()}")')"
fi
