# Where corpora live on this machine. A recipe's stage 0 uses the copy named here instead of downloading.
# Override per run with --db_root, or set these in the environment.
LJSPEECH=${LJSPEECH:-downloads}
CATHY=${CATHY:-}
