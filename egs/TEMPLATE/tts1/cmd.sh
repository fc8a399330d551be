# Job runners, in Kaldi's manner: every parallel stage runs "${cmd} JOB=1:N LOG COMMAND".
# local: run.pl on this machine. slurm: slurm.pl, resources mapped by conf/slurm.conf.
cmd_backend=${EBM_CMD_BACKEND:-local}

if [ "${cmd_backend}" = local ]; then
    export train_cmd="run.pl"
    export cuda_cmd="run.pl"
    export decode_cmd="run.pl"
elif [ "${cmd_backend}" = slurm ]; then
    export train_cmd="slurm.pl --config conf/slurm.conf"
    export cuda_cmd="slurm.pl --config conf/slurm.conf"
    export decode_cmd="slurm.pl --config conf/slurm.conf"
else
    echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
    return 1
fi
