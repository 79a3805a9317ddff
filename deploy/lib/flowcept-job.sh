#!/usr/bin/env bash
# flowcept-job.sh: what the Slurm and PBS templates share (deploy/slurm/*.sbatch, deploy/pbs/*.pbs).
#
# A template sets FC_BATCH (slurm | pbs | local) and its defaults, sources this file and calls
#     fc_job dask      or      fc_job ray
# which runs the whole job on the first node of the allocation:
#   1. checks (before starting anything): the user script exists, the tools are on PATH, settings are valid;
#   2. transport: starts Redis (append-only file under the job directory) or checks an existing
#      Redis / Kafka, waiting until it answers (bounded);
#   3. consumer: `flowcept-dist consume` in the background (or the Ray consumer actor);
#   4. engine: Dask scheduler here + `dask worker` on every node, or `ray start --head` here +
#      `ray start --address` on the other nodes (through srun / pbsdsh / mpiexec / ssh);
#   5. the user's script, in the foreground of the job (its output goes to the job's output);
#   6. at the end, on an error, or on SIGUSR1/SIGTERM/SIGINT/SIGHUP (time limit): stops the script,
#      the workers, the scheduler / head, drains and stops the consumer, stops Redis, prints where
#      the records are and a one-line summary. Exit status: the script's, 2 for a setup error,
#      128+N after signal N.
# Only processes this job started are stopped: each background process gets its own process group
# and is recorded as PID + start time (PIDs are reused), and stopping signals it, its group and its
# descendants, checking the start time before every signal. `ray stop` is never used. Every process
# of the job carries FC_JOB_TAG in its environment; after the stop sequence the first node looks for
# processes that outlived it (by that tag, or by files open in the job's Ray temp dir, since Ray
# workers and redis-server overwrite their environment with their title), names them in a WARNING
# and ends them.
#
# On the other nodes the launcher runs:  bash flowcept-job.sh node-agent JOB_DIR ROLE NODE
# The agent sources JOB_DIR/run/job.env (pbsdsh passes no environment), runs JOB_DIR/run/ROLE.sh
# in its own process group, and stops it when JOB_DIR/run/stop-ROLE appears or on a signal.
#
# Variables (each template documents the ones users set; all can come from the environment):
#   FC_SCRIPT             the workflow to run (required): a .py file runs with the job's python, any
#                         other executable file as it is          FC_SCRIPT_ARGS  its arguments
#   (every *_ARGS variable holds shell words: quote as on a command line, e.g. --resources='{"gpu_node": 1}')
#   FC_WORKERS_PER_NODE   Dask: worker processes per node (1); Ray: --num-cpus per node (all cores)
#   FC_THREADS_PER_WORKER Dask: threads per worker process (Dask's default: cores / workers)
#   FC_STORE              LMDB directory (default JOB_DIR/lmdb) or a mongodb:// URI
#   FC_TRANSPORT          redis (default) | kafka | ray_actor (Ray only) | direct (one node only)
#   FC_REDIS              host:port of an existing Redis; empty: start one on the first node
#   FC_REDIS_PORT         port of the Redis the job starts (auto: a free port)
#   FC_REDIS_BIND         its bind addresses (0.0.0.0); it gets a random password (FC_REDIS_PASSWORD)
#   FC_KAFKA              Kafka bootstrap servers (transport kafka; an existing broker)
#   FC_CONSUMER           process (default) | actor (Ray consumer actor) | none (a service consumes)
#   FC_JOB_DIR            logs, PIDs, Redis data, default store: SUBMIT_DIR/flowcept-JOBID; every node
#                         must see it (shared filesystem): the nodes read job.env and stop files there
#   FC_SETUP              shell code run first (module load ..., source venv/bin/activate); the
#                         environment it leaves (PATH, PYTHONPATH, FLOWCEPT_*...) reaches every node
#   FC_HEAD_HOST          the first node's address as other nodes reach it (hostname)
#   FC_LAUNCHER           srun | pbsdsh | mpiexec | ssh | local (srun for Slurm, pbsdsh for PBS)
#   FC_SRUN_ARGS          extra srun options (--overlap, and --cpus-per-task=$SLURM_CPUS_ON_NODE if set)
#   FC_MPIEXEC_ARGS       extra mpiexec options
#   FC_DASK_PORT (0: any) FC_DASK_DASHBOARD (:8787) FC_DASK_SCHEDULER_ARGS FC_DASK_WORKER_ARGS
#   FC_RAY_PORT (auto)    FC_RAY_DASHBOARD (false)  FC_RAY_TMPDIR  FC_RAY_HEAD_ARGS  FC_RAY_WORKER_ARGS
#   FC_RAY_START_ATTEMPTS tries of `ray start --head` that exits during startup (2)
#   FC_RAY_WRAP           true: run the script through ray_driver.py (adds the Flowcept runtime_env
#                         to its ray.init); false: the script calls flowcept_dist.ray.runtime_env() itself
#   FC_START_TIMEOUT_S    longest wait for each service to come up (180)
#   FC_REDIS_WAIT_S       longest wait for an existing Redis / Kafka to answer (10)
#   FC_STOP_TIMEOUT_S     longest wait for each process to stop before SIGKILL (30)
#   FC_SCRIPT_GRACE_S     on a signal, how long the script has after SIGINT before SIGTERM (30)
#   FC_TIME_LIMIT_S       optional: stop the job (as on SIGUSR1) after this many seconds (PBS has no
#                         early-warning signal: set it a few minutes below the walltime)

# ---------------------------------------------------------------------------------------------
# logging and small utilities

fc_log() { printf '[flowcept-job %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

fc_die() {
    fc_log "ERROR: $*"
    FC__RC=${FC__RC:-2}
    exit "$FC__RC"
}

fc__bool() { case "${1,,}" in 1 | true | yes | on) return 0 ;; *) return 1 ;; esac; }

fc__lib_file() { local d; d=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) && printf '%s/%s\n' "$d" "$(basename "${BASH_SOURCE[0]}")"; }

# -- processes ---------------------------------------------------------------------------------
# A process is named by an ID "PID:STARTTIME" (start time in clock ticks since boot, from
# /proc/PID/stat). PIDs are reused (pid_max can be 32768 and Ray starts many processes), so a
# PID recorded earlier is signalled only while its start time still matches: never someone else's
# process that got the number since. The environment cannot serve: redis-server and Ray workers
# rewrite their process title over it.

# ID of live (non-zombie) process $1; fails if there is none
fc__id() {
    local st
    { st=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
    st=${st##*) }
    # shellcheck disable=SC2086
    set -- "$1" $st # $2 = state (field 3), ${21} = starttime (field 22)
    [[ $2 != Z && $2 != X ]] || return 1
    echo "$1:${21}"
}

fc__live() { [[ -n $1 && $(fc__id "${1%%:*}" 2>/dev/null) == "$1" ]]; }

fc__pids_of() { local i; for i in "$@"; do echo "${i%%:*}"; done; }

fc__live_ids() { local i; for i in "$@"; do fc__live "$i" && echo "$i"; done; }

fc__any_live() { local i; for i in "$@"; do fc__live "$i" && return 0; done; return 1; }

# IDs of the live members of the process group led by process ID $1. A group id is not reused while
# the group has members, so if the leader's PID now names another process, the group is gone: none.
fc__group_ids() {
    local p cur
    cur=$(fc__id "${1%%:*}") && [[ $cur != "$1" ]] && return 0
    for p in $(ps -eo pid=,pgid= | awk -v g="${1%%:*}" '$2 == g {print $1}'); do fc__id "$p"; done
}

# IDs of the live descendants of pid $1 (whatever their process group: Ray workers make their own)
fc__descendant_ids() {
    local p
    for p in $(ps -eo pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END { for (p in parent) { q = parent[p]; while (q != "" && q > 1) { if (q == root) { print p; break } q = parent[q] } } }'); do
        fc__id "$p"
    done
}

# signal $1 to every ID still live
fc__signal() {
    local sig=$1 i; shift
    for i in "$@"; do fc__live "$i" && kill -s "$sig" "${i%%:*}" 2>/dev/null; done
}

# wait until none of the IDs is live, at most $1 seconds; 1 if some still are
fc__wait_gone() {
    local timeout=$1; shift
    local deadline=$((SECONDS + timeout))
    while fc__any_live "$@"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.2
    done
    return 0
}

# stop process ID $2 (a group leader: started by fc__start or by the agent) and everything below it:
# signal $3 to the leader only (Dask, Redis, the consumer, `ray start` close gracefully on it), wait up
# to $4 s, then SIGKILL what is left of its group and its descendants. $1 names it in the log.
fc__stop_tree() {
    local name=$1 id=$2 sig=$3 timeout=$4 pid=${2%%:*} group desc rest
    [[ -n $pid ]] || return 0
    group=$(fc__group_ids "$id")
    fc__live "$id" || [[ -n $group ]] || return 0
    desc=
    fc__live "$id" && desc=$(fc__descendant_ids "$pid") # (only while the PID is still ours)
    if fc__live "$id"; then
        kill -s "$sig" "$pid" 2>/dev/null
    else # the leader is gone, not all of its group: tell them
        fc__signal "$sig" $group
    fi
    if fc__wait_gone "$timeout" "$id" $group $desc $(fc__group_ids "$id"); then
        fc_log "stopped $name (pid $pid)"
        return 0
    fi
    rest=$(fc__live_ids $( { echo "$id" $group $desc; fc__group_ids "$id"; } | tr ' ' '\n' | sort -u))
    fc_log "WARNING: $name (pid $pid) did not stop within ${timeout} s after SIG$sig: SIGKILL to $(fc__describe $(fc__pids_of $rest))"
    fc__signal KILL $rest
    fc__wait_gone 10 $rest || fc_log "WARNING: still alive after SIGKILL: $(echo $rest)"
    return 1
}

# "pid command; pid command" for the log
fc__describe() { (($#)) && ps -o pid=,args= -p "$(echo "$@" | tr ' ' ',')" 2>/dev/null | sed 's/^ *//' | cut -c1-100 | tr -s ' ' | paste -sd ';' -; }

# ancestors of this shell (never ours to stop: the batch step, the launcher, the agent)
fc__ancestors() {
    local p=$$ out=" $$ ${BASHPID:-$$} "
    while [[ -n $p && $p -gt 1 ]]; do
        p=$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')
        out+="$p "
    done
    printf '%s' "$out"
}

# PIDs of this user's live processes, except this shell's ancestors, that carry FC_JOB_TAG=<tag>
# in their environment (mode "tag"), or hold a file open under one of the directories $2... ("files").
# Call it with FC_JOB_TAG not exported (export -n, in a subshell), or the commands of the scan itself
# (grep, find, sort) would carry the tag and be found.
fc__job_pids() {
    local mode=$1 excl p pid; shift
    excl=$(fc__ancestors)
    if [[ $mode == tag ]]; then
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [[ -O $p && $excl != *" $pid "* ]] || continue
            grep -qzxF -- "FC_JOB_TAG=$FC_JOB_TAG" "$p/environ" 2>/dev/null && fc__id "$pid" >/dev/null && echo "$pid"
        done
    else
        local d args=()
        for d in "$@"; do [[ -n $d && -d $d ]] && args+=(-o -lname "$d/*"); done
        ((${#args[@]})) || return 0
        find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 \( -false "${args[@]}" \) -printf '%h\n' 2>/dev/null |
            cut -d/ -f3 | sort -u | while read -r pid; do
                [[ -O /proc/$pid && $excl != *" $pid "* ]] && fc__id "$pid" >/dev/null && echo "$pid"
            done
    fi
}

# start "$@" in the background in its own process group; $1 = name, $2 = log file
# (empty: inherit the job's output). "PID STARTTIME" goes to FC_RUN_DIR/NAME.pid; FC__PID = PID,
# FC__ID = its ID.
fc__start() {
    local name=$1 logf=$2; shift 2
    set -m
    if [[ -n $logf ]]; then
        "$@" >>"$logf" 2>&1 </dev/null &
    else
        "$@" </dev/null &
    fi
    FC__PID=$!
    set +m
    FC__ID=$(fc__id "$FC__PID") || FC__ID="$FC__PID:gone"
    echo "$FC__PID ${FC__ID#*:}" >"$FC_RUN_DIR/$name.pid"
    FC__STARTED+=("$name")
}

fc__pid_of_file() { local p; read -r p _ <"$1" && echo "$p"; }

fc__pid() { local p; [[ -f $FC_RUN_DIR/$1.pid ]] && read -r p _ <"$FC_RUN_DIR/$1.pid" && echo "$p"; }

# the ID recorded for NAME
fc__pid_id() { local p t; [[ -f $FC_RUN_DIR/$1.pid ]] && read -r p t <"$FC_RUN_DIR/$1.pid" && echo "$p:$t"; }

fc__started() { local n; for n in "${FC__STARTED[@]}"; do [[ $n == "$1" ]] && return 0; done; return 1; }

fc__py() { "$FC_PYTHON" "$FC_LIB_DIR/job_helpers.py" "$@"; }

# bounded wait for a condition ($4..., a command) while process ID $2 lives; 2 if it ended, 1 on timeout
fc__wait_for() {
    local what=$1 id=$2 timeout=$3; shift 3
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        [[ -n $FC__SIGNAL ]] && fc_die "interrupted by SIG$FC__SIGNAL while waiting for $what"
        [[ -n $id ]] && ! fc__live "$id" && return 2
        ((SECONDS >= deadline)) && return 1
        sleep 0.25
    done
    return 0
}

# run a job_helpers.py wait in the background; give up early if a node agent's process exits
# (ROLE-NODE.done appears before any stop was asked) or on a signal. Output in FC__WAIT_MSG.
fc__wait_cluster() {
    local out=$FC_RUN_DIR/wait.out f hp hid rc
    "$FC_PYTHON" "$FC_LIB_DIR/job_helpers.py" "$@" >"$out" 2>&1 </dev/null &
    hp=$!
    hid=$(fc__id "$hp")
    while fc__live "$hid"; do
        for f in "$FC_RUN_DIR"/*.done; do
            [[ -f $f ]] || continue
            fc__signal TERM "$hid"
            wait "$hp" 2>/dev/null
            f=$(basename "$f" .done)
            FC__WAIT_MSG="$f exited: $(<"$FC_RUN_DIR/$f.done") (log: $FC_LOG_DIR/$f.log)"
            return 1
        done
        if [[ -n $FC__SIGNAL ]]; then
            fc__signal TERM "$hid"
            wait "$hp" 2>/dev/null
            fc_die "interrupted by SIG$FC__SIGNAL while waiting for the cluster"
        fi
        sleep 0.25
    done
    wait "$hp"
    rc=$?
    FC__WAIT_MSG=$(<"$out")
    return "$rc"
}

fc__last_log() { [[ -f $1 ]] && tail -n "${2:-15}" "$1" | sed 's/^/    | /' >&2; }

# ---------------------------------------------------------------------------------------------
# allocation: job id, nodes, submit directory

fc__allocation() {
    FC_NODES=()
    FC_PBS_INDEX=()
    case "$FC_BATCH" in
    slurm)
        [[ -n ${SLURM_JOB_ID:-} && -n ${SLURM_JOB_NODELIST:-} ]] ||
            fc_die "SLURM_JOB_ID / SLURM_JOB_NODELIST are not set: submit with sbatch (or FC_BATCH=local to run on this machine)"
        FC_JOB_ID=$SLURM_JOB_ID
        FC_SUBMIT_DIR=${SLURM_SUBMIT_DIR:-$PWD}
        command -v scontrol >/dev/null || fc_die "scontrol is not on PATH: cannot expand SLURM_JOB_NODELIST"
        mapfile -t FC_NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
        : "${FC_LAUNCHER:=srun}"
        ;;
    pbs)
        [[ -n ${PBS_JOBID:-} && -n ${PBS_NODEFILE:-} ]] ||
            fc_die "PBS_JOBID / PBS_NODEFILE are not set: submit with qsub (or FC_BATCH=local to run on this machine)"
        [[ -r $PBS_NODEFILE ]] || fc_die "PBS_NODEFILE $PBS_NODEFILE is not readable"
        FC_JOB_ID=${PBS_JOBID%%.*}
        FC_SUBMIT_DIR=${PBS_O_WORKDIR:-$PWD}
        local line i=0 n
        declare -A seen=()
        while IFS= read -r line || [[ -n $line ]]; do
            n=${line%% *}
            if [[ -n $n && -z ${seen[$n]:-} ]]; then
                seen[$n]=1
                FC_NODES+=("$n")
                FC_PBS_INDEX+=("$i") # pbsdsh -n counts lines of PBS_NODEFILE (one per cpu / mpiproc)
            fi
            [[ -n $n ]] && ((i++))
        done <"$PBS_NODEFILE"
        : "${FC_LAUNCHER:=pbsdsh}"
        ;;
    local)
        FC_JOB_ID=${FC_JOB_ID:-local-$$}
        FC_SUBMIT_DIR=$PWD
        FC_NODES=("$(hostname)")
        : "${FC_LAUNCHER:=local}"
        ;;
    *) fc_die "FC_BATCH must be slurm, pbs or local, not '$FC_BATCH'" ;;
    esac
    ((${#FC_NODES[@]} > 0)) || fc_die "the allocation lists no nodes"
}

# ---------------------------------------------------------------------------------------------
# checks, directories, environment

fc__defaults() {
    : "${FC_TRANSPORT:=redis}" "${FC_CONSUMER:=process}" "${FC_WORKERS_PER_NODE:=}"
    : "${FC_START_TIMEOUT_S:=180}" "${FC_REDIS_WAIT_S:=10}" "${FC_STOP_TIMEOUT_S:=30}" "${FC_SCRIPT_GRACE_S:=30}"
    : "${FC_JOB_DIR:=$FC_SUBMIT_DIR/flowcept-$FC_JOB_ID}"
    : "${FC_STORE:=$FC_JOB_DIR/lmdb}"
    : "${FC_HEAD_HOST:=$(hostname)}"
    : "${FC_REDIS_BIND:=0.0.0.0}" "${FC_REDIS_PORT:=auto}"
    : "${FC_DASK_PORT:=0}" "${FC_DASK_DASHBOARD:=:8787}"
    : "${FC_RAY_PORT:=auto}" "${FC_RAY_DASHBOARD:=false}" "${FC_RAY_WRAP:=true}"
    : "${FC_RAY_TMPDIR:=${TMPDIR:-/tmp}/fc-ray-$FC_JOB_ID}"
    if [[ -z ${FC_SRUN_ARGS+x} ]]; then
        FC_SRUN_ARGS="--overlap${SLURM_CPUS_ON_NODE:+ --cpus-per-task=$SLURM_CPUS_ON_NODE}"
    fi
    : "${FC_MPIEXEC_ARGS:=}"
    # `ray start --block` on SIGTERM first drains its node for this long (default 30 s): at the end
    # of a batch job there is nothing left to drain, so it stops at once
    export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}
}

fc__preflight() {
    local engine=$1 tool
    # the user script first: a typo must cost seconds, not a scheduler start
    [[ -n ${FC_SCRIPT:-} ]] || fc_die "FC_SCRIPT is not set: the Python workflow to run (FC_SCRIPT=/path/workflow.py)"
    [[ -f $FC_SCRIPT && -r $FC_SCRIPT ]] || fc_die "user script not found or not readable: FC_SCRIPT=$FC_SCRIPT"
    FC_SCRIPT=$(cd "$(dirname "$FC_SCRIPT")" && pwd)/$(basename "$FC_SCRIPT")
    case "$FC_TRANSPORT" in
    redis | kafka | direct) ;;
    ray_actor) [[ $engine == ray ]] || fc_die "FC_TRANSPORT=ray_actor works with Ray only" ;;
    *) fc_die "FC_TRANSPORT must be redis, kafka, direct or ray_actor, not '$FC_TRANSPORT'" ;;
    esac
    case "$FC_CONSUMER" in
    process | none) ;;
    actor) [[ $engine == ray ]] || fc_die "FC_CONSUMER=actor works with Ray only" ;;
    *) fc_die "FC_CONSUMER must be process, actor or none, not '$FC_CONSUMER'" ;;
    esac
    [[ $FC_TRANSPORT == ray_actor ]] && FC_CONSUMER=actor
    [[ $FC_TRANSPORT == direct ]] && FC_CONSUMER=none
    if [[ $FC_TRANSPORT == direct && ${#FC_NODES[@]} -gt 1 && $FC_STORE != mongodb://* && $FC_STORE != mongodb+srv://* ]]; then
        fc_die "FC_TRANSPORT=direct with an LMDB store needs a single node (LMDB is not shared across hosts): use FC_TRANSPORT=redis or a mongodb:// FC_STORE"
    fi
    [[ $FC_TRANSPORT == kafka && -z ${FC_KAFKA:-} ]] && fc_die "FC_TRANSPORT=kafka needs FC_KAFKA=host:port of the brokers"
    local v
    for v in SCRIPT SRUN MPIEXEC DASK_SCHEDULER DASK_WORKER RAY_HEAD RAY_WORKER; do
        v=FC_${v}_ARGS
        # shell words, as the role scripts on the other nodes read FC_DASK_WORKER_ARGS / FC_RAY_WORKER_ARGS
        eval "FC__${v#FC_}=(${!v:-})" 2>/dev/null || fc_die "$v is not valid shell words: ${!v}"
    done
    [[ $FC_WORKERS_PER_NODE =~ ^[0-9]*$ ]] || fc_die "FC_WORKERS_PER_NODE must be a number, not '$FC_WORKERS_PER_NODE'"
    FC_PYTHON=$(command -v python3 || command -v python) || fc_die "no python on PATH (set FC_SETUP to activate your environment)"
    local tools=(flowcept-dist)
    [[ $engine == dask ]] && tools+=(dask)
    [[ $engine == ray ]] && tools+=(ray)
    [[ $FC_TRANSPORT == redis && -z ${FC_REDIS:-} ]] && tools+=(redis-server)
    if [[ $FC_LAUNCHER != local ]] && { ((${#FC_NODES[@]} > 1)) || [[ $engine == dask ]]; }; then
        tools+=("$FC_LAUNCHER")
    fi
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null || fc_die "$tool is not on PATH (install it, or set FC_SETUP to load its module / environment)"
    done
    [[ $FC_LAUNCHER =~ ^(srun|pbsdsh|mpiexec|mpirun|ssh|local)$ ]] || fc_die "FC_LAUNCHER must be srun, pbsdsh, mpiexec, ssh or local, not '$FC_LAUNCHER'"
    if [[ $FC_LAUNCHER == local && ${#FC_NODES[@]} -gt 1 ]]; then
        fc_die "FC_LAUNCHER=local cannot reach the other ${#FC_NODES[@]} nodes"
    fi
}

fc__dirs() {
    FC_RUN_DIR=$FC_JOB_DIR/run
    FC_LOG_DIR=$FC_JOB_DIR/logs
    mkdir -p "$FC_RUN_DIR" "$FC_LOG_DIR" || fc_die "cannot create the job directory $FC_JOB_DIR (set FC_JOB_DIR)"
    chmod 700 "$FC_JOB_DIR" "$FC_RUN_DIR" 2>/dev/null
    rm -f "$FC_RUN_DIR"/stop-* "$FC_RUN_DIR"/*.done
}

fc__settings_env() {
    local engine=$1
    export FLOWCEPT_TRANSPORT_STATS_DIR=${FLOWCEPT_TRANSPORT_STATS_DIR:-$FC_JOB_DIR/stats}
    if [[ $engine == ray ]]; then
        # Ray ends a job's workers without exit handlers once the driver disconnects: the driver waits
        # ray.drain_grace_s for their last exports. On a loaded node the default 0.25 s can be short,
        # and 2 s at the end of a batch job cost nothing.
        export FLOWCEPT_RAY_DRAIN_GRACE_S=${FLOWCEPT_RAY_DRAIN_GRACE_S:-2}
    fi
    case "$FC_STORE" in
    mongodb://* | mongodb+srv://*)
        export FLOWCEPT_STORE_TYPE=mongo FLOWCEPT_STORE_MONGO_URI=$FC_STORE ;;
    *)
        mkdir -p "$FC_STORE" || fc_die "cannot create the store directory FC_STORE=$FC_STORE"
        FC_STORE=$(cd "$FC_STORE" && pwd)
        export FLOWCEPT_STORE_TYPE=lmdb FLOWCEPT_STORE_LMDB_PATH=$FC_STORE ;;
    esac
    case "$FC_TRANSPORT" in
    redis) export FLOWCEPT_TRANSPORT_TYPE=redis_streams ;;
    kafka) export FLOWCEPT_TRANSPORT_TYPE=kafka FLOWCEPT_KAFKA_BOOTSTRAP_SERVERS=$FC_KAFKA ;;
    ray_actor) export FLOWCEPT_TRANSPORT_TYPE=ray_actor FLOWCEPT_RAY_CONSUMER_NAME=${FLOWCEPT_RAY_CONSUMER_NAME:-flowcept-consumer-$FC_JOB_ID} ;;
    direct) export FLOWCEPT_TRANSPORT_TYPE=direct ;;
    esac
    if [[ $FC_TRANSPORT == redis ]]; then
        if [[ -n ${FC_REDIS:-} ]]; then
            [[ $FC_REDIS == *:* ]] || fc_die "FC_REDIS must be host:port, not '$FC_REDIS'"
            export FLOWCEPT_REDIS_HOST=${FC_REDIS%:*} FLOWCEPT_REDIS_PORT=${FC_REDIS##*:}
        else
            [[ $FC_REDIS_PORT == auto ]] && FC_REDIS_PORT=$(fc__py free-port "$FC_HEAD_HOST")
            [[ $FC_REDIS_PORT =~ ^[0-9]+$ ]] || fc_die "FC_REDIS_PORT must be a port number or auto, not '$FC_REDIS_PORT'"
            : "${FC_REDIS_PASSWORD:=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}"
            export FLOWCEPT_REDIS_HOST=$FC_HEAD_HOST FLOWCEPT_REDIS_PORT=$FC_REDIS_PORT FLOWCEPT_REDIS_PASSWORD=$FC_REDIS_PASSWORD
        fi
    fi
    local msg
    msg=$(fc__py check-settings 2>&1) || fc_die "invalid Flowcept settings: $msg"
}

# what the other nodes need: written once, sourced by the node agent (pbsdsh passes no environment)
fc__write_job_env() {
    local v f=$FC_RUN_DIR/job.env
    (
        umask 077
        {
            echo "# environment of flowcept job $FC_JOB_ID (written by flowcept-job.sh; holds secrets: mode 600)"
            for v in PATH LD_LIBRARY_PATH PYTHONPATH VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV HOME LANG LC_ALL; do
                [[ -n ${!v+x} ]] && printf 'export %s=%q\n' "$v" "${!v}"
            done
            for v in $(compgen -e | grep -E '^(FLOWCEPT_|FC_|DASK_|RAY_)'); do
                printf 'export %s=%q\n' "$v" "${!v}"
            done
        } >"$f"
    )
}

# ---------------------------------------------------------------------------------------------
# transport and consumer

fc__start_transport() {
    case "$FC_TRANSPORT" in
    direct)
        fc_log "transport: direct (every process writes $FC_STORE itself)"
        return ;;
    ray_actor)
        fc_log "transport: Ray consumer actor (no broker)"
        return ;;
    esac
    if [[ $FC_TRANSPORT == redis && -z ${FC_REDIS:-} ]]; then
        local rdir=$FC_JOB_DIR/redis conf
        mkdir -p "$rdir"
        conf=$rdir/redis.conf
        (
            umask 077
            printf '%s\n' "port $FC_REDIS_PORT" "bind $FC_REDIS_BIND" "dir $rdir" "daemonize no" \
                "appendonly yes" "appendfsync everysec" 'save ""' "logfile $FC_LOG_DIR/redis.log" \
                "requirepass $FC_REDIS_PASSWORD" "maxmemory-policy noeviction" >"$conf"
        )
        fc__start redis "" redis-server "$conf"
        fc_log "starting Redis on $FC_HEAD_HOST:$FC_REDIS_PORT (append-only file in $rdir), pid $FC__PID"
        local msg
        if ! msg=$(fc__py wait-transport "$FC_START_TIMEOUT_S" 2>&1); then
            fc__last_log "$FC_LOG_DIR/redis.log"
            fc_die "Redis did not answer within $FC_START_TIMEOUT_S s: $msg"
        fi
        fc_log "transport: $msg"
    else
        local what=${FC_REDIS:-$FC_KAFKA} msg
        if ! msg=$(fc__py wait-transport "$FC_REDIS_WAIT_S" 2>&1); then
            fc_die "the existing $FC_TRANSPORT at $what does not answer: $msg"
        fi
        fc_log "transport: existing $FC_TRANSPORT: $msg"
    fi
}

fc__start_consumer_process() {
    local logf=$FC_LOG_DIR/consumer.log
    fc__start consumer "$logf" flowcept-dist consume --name "flowcept-job-$FC_JOB_ID"
    local pid=$FC__PID id=$FC__ID
    fc__wait_for "the consumer" "$id" 60 grep -q '^consuming ' "$logf"
    local rc=$?
    if ((rc != 0)) || ! fc__live "$id"; then
        fc__last_log "$logf"
        fc_die "the consumer did not start (log: $logf)"
    fi
    fc_log "consumer: flowcept-dist consume, pid $pid (log: $logf)"
}

fc__ray_consumer_cli() { flowcept-dist ray-consumer "$1" --address "$RAY_ADDRESS" --timeout "$FC_START_TIMEOUT_S"; }

# ---------------------------------------------------------------------------------------------
# other nodes: launch an agent per node

fc__launch_role() {
    local role=$1 idx=$2 node=${FC_NODES[$2]}
    local agent=("$BASH" "$FC_LIB_FILE" node-agent "$FC_JOB_DIR" "$role" "$node")
    local name="launch-$role-$idx" logf=$FC_LOG_DIR/launcher-$role-$node.log
    case "$FC_LAUNCHER" in
    srun) fc__start "$name" "$logf" srun --nodes=1 --ntasks=1 -w "$node" "${FC__SRUN_ARGS[@]}" "${agent[@]}" ;;
    pbsdsh) fc__start "$name" "$logf" pbsdsh -n "${FC_PBS_INDEX[$idx]}" -- "${agent[@]}" ;;
    mpiexec | mpirun) fc__start "$name" "$logf" "$FC_LAUNCHER" -n 1 -host "$node" "${FC__MPIEXEC_ARGS[@]}" "${agent[@]}" ;;
    ssh) fc__start "$name" "$logf" ssh -o BatchMode=yes "$node" "$(printf '%q ' "${agent[@]}")" ;;
    local) fc__start "$name" "$logf" "${agent[@]}" ;;
    esac
    FC__LAUNCHED+=("$role:$idx")
}

# stop every launched agent of role $1: stop file, then wait for the launchers; kill them if needed
fc__stop_role() {
    local role=$1 entry idx ids=() f line
    local launched=()
    for entry in "${FC__LAUNCHED[@]}"; do [[ ${entry%%:*} == "$role" ]] && launched+=("${entry#*:}"); done
    ((${#launched[@]})) || return 0
    touch "$FC_RUN_DIR/stop-$role"
    for idx in "${launched[@]}"; do ids+=("$(fc__pid_id "launch-$role-$idx")"); done
    if ! fc__wait_gone $((FC_STOP_TIMEOUT_S + 20)) "${ids[@]}"; then
        for idx in "${launched[@]}"; do
            fc__stop_tree "launcher of $role on ${FC_NODES[$idx]}" "$(fc__pid_id "launch-$role-$idx")" TERM 10
        done
    fi
    for idx in "${launched[@]}"; do
        f=$FC_RUN_DIR/$role-${FC_NODES[$idx]}.done
        if [[ -f $f ]]; then
            line=$(<"$f")
            fc_log "$role on ${FC_NODES[$idx]}: $line"
            [[ $line == *"left 0"* ]] || FC__LEFTOVERS+=("$role on ${FC_NODES[$idx]}: $line")
        else
            fc_log "WARNING: $role on ${FC_NODES[$idx]} did not report its stop (log: $FC_LOG_DIR/$role-${FC_NODES[$idx]}.log)"
            FC__LEFTOVERS+=("$role on ${FC_NODES[$idx]}: no stop report")
        fi
    done
}

# bash flowcept-job.sh node-agent JOB_DIR ROLE NODE
fc_node_agent() {
    local job_dir=$1 role=$2 node=$3
    [[ -f $job_dir/run/job.env ]] || { echo "flowcept-job node-agent: $job_dir/run/job.env not found" >&2; return 2; }
    # shellcheck disable=SC1091
    source "$job_dir/run/job.env"
    FC_RUN_DIR=$job_dir/run
    local logf=$job_dir/logs/$role-$node.log stopf=$FC_RUN_DIR/stop-$role done=$FC_RUN_DIR/$role-$node.done
    export FC_NODE=$node
    FC__SIGNAL=
    trap 'FC__SIGNAL=TERM' TERM
    trap 'FC__SIGNAL=INT' INT
    trap 'FC__SIGNAL=HUP' HUP
    set -m
    "$BASH" "$FC_RUN_DIR/$role.sh" >>"$logf" 2>&1 </dev/null &
    local child=$! cid
    set +m
    cid=$(fc__id "$child")
    echo "$child ${cid#*:} $(hostname)" >"$FC_RUN_DIR/$role-$node.pid"
    while fc__live "$cid" && [[ ! -e $stopf && -z $FC__SIGNAL ]]; do
        sleep 0.5
    done
    local reason=exited
    [[ -e $stopf ]] && reason=stopped
    [[ -n $FC__SIGNAL ]] && reason="stopped on SIG$FC__SIGNAL"
    local desc group
    desc=
    fc__live "$cid" && desc=$(fc__descendant_ids "$child")
    group=$(fc__group_ids "$cid")
    fc__stop_tree "$role on $node" "$cid" TERM "${FC_STOP_TIMEOUT_S:-30}" 2>>"$logf"
    wait "$child" 2>/dev/null
    local rc=$? left
    left=$(fc__live_ids $cid $desc $group | sort -u | wc -l)
    echo "$reason (exit $rc), left $left processes" >"$done"
    return 0
}

# ---------------------------------------------------------------------------------------------
# engines

fc__start_dask() {
    local sfile=$FC_JOB_DIR/scheduler.json logf=$FC_LOG_DIR/dask-scheduler.log i
    rm -f "$sfile"
    fc__start dask-scheduler "$logf" dask scheduler --scheduler-file "$sfile" --host "$FC_HEAD_HOST" \
        --port "$FC_DASK_PORT" --dashboard-address "$FC_DASK_DASHBOARD" --preload scheduler_plugins.dask \
        "${FC__DASK_SCHEDULER_ARGS[@]}"
    local spid=$FC__PID
    fc__wait_for "the Dask scheduler" "$FC__ID" "$FC_START_TIMEOUT_S" test -s "$sfile"
    local rc=$?
    if ((rc != 0)); then
        fc__last_log "$logf"
        ((rc == 2)) && fc_die "the Dask scheduler exited (log: $logf)"
        fc_die "the Dask scheduler did not write $sfile within $FC_START_TIMEOUT_S s (log: $logf)"
    fi
    fc_log "Dask scheduler: pid $spid, scheduler file $sfile (log: $logf)"
    {
        printf 'exec dask worker --scheduler-file %q --name "$FC_NODE" --preload worker_plugins.dask' "$sfile"
        printf ' --local-directory "${TMPDIR:-/tmp}"'
        [[ -n $FC_WORKERS_PER_NODE ]] && printf ' --nworkers %q' "$FC_WORKERS_PER_NODE"
        [[ -n ${FC_THREADS_PER_WORKER:-} ]] && printf ' --nthreads %q' "$FC_THREADS_PER_WORKER"
        printf ' %s\n' "${FC_DASK_WORKER_ARGS:-}"
    } >"$FC_RUN_DIR/dask-worker.sh"
    fc__write_job_env
    for i in "${!FC_NODES[@]}"; do fc__launch_role dask-worker "$i"; done
    local expect=$((${#FC_NODES[@]} * ${FC_WORKERS_PER_NODE:-1}))
    fc_log "launched Dask workers on ${#FC_NODES[@]} node(s) through $FC_LAUNCHER; waiting for $expect workers"
    if ! fc__wait_cluster wait-dask "$sfile" "$expect" "$FC_START_TIMEOUT_S"; then
        for i in "${!FC_NODES[@]}"; do fc__last_log "$FC_LOG_DIR/dask-worker-${FC_NODES[$i]}.log" 8; done
        fc_die "Dask cluster not ready: $FC__WAIT_MSG"
    fi
    fc_log "$FC__WAIT_MSG"
    export DASK_SCHEDULER_ADDRESS
    DASK_SCHEDULER_ADDRESS=$("$FC_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$sfile")
    export FC_SCHEDULER_FILE=$sfile
}

fc__start_ray() {
    local head_ip logf=$FC_LOG_DIR/ray-head.log i
    head_ip=$(fc__py resolve "$FC_HEAD_HOST" 2>&1) || fc_die "cannot resolve FC_HEAD_HOST=$FC_HEAD_HOST: $head_ip"
    [[ $FC_RAY_PORT == auto ]] && FC_RAY_PORT=$(fc__py free-port "$FC_HEAD_HOST")
    export RAY_ADDRESS=$head_ip:$FC_RAY_PORT
    local tmp=$FC_RAY_TMPDIR
    [[ -e $tmp ]] && tmp=$tmp-$RANDOM
    FC_RAY_TMPDIR=$tmp
    mkdir -p "$tmp" || fc_die "cannot create FC_RAY_TMPDIR=$tmp"
    local cpus=()
    [[ -n $FC_WORKERS_PER_NODE ]] && cpus=(--num-cpus "$FC_WORKERS_PER_NODE")
    local dash=false
    fc__bool "$FC_RAY_DASHBOARD" && dash=true
    # Ray gives a starting node 30 s (fixed) to register with its GCS; on an overloaded node the head
    # can miss that and exit: it gets FC_RAY_START_ATTEMPTS tries, each in a fresh temp dir
    local attempt hpid rc hdir
    for ((attempt = 1; ; attempt++)); do
        hdir=$tmp/head
        ((attempt > 1)) && hdir+=$attempt
        fc__start ray-head "$logf" ray start --head --block --node-ip-address "$head_ip" --port "$FC_RAY_PORT" \
            --temp-dir "$hdir" --include-dashboard "$dash" --disable-usage-stats "${cpus[@]}" "${FC__RAY_HEAD_ARGS[@]}"
        hpid=$FC__PID
        fc__wait_for "the Ray head" "$FC__ID" "$FC_START_TIMEOUT_S" test -s "$hdir/ray_current_cluster"
        rc=$?
        ((rc == 0)) && break
        fc__last_log "$logf" 6
        fc__last_log "$hdir/session_latest/logs/raylet.out" 6
        fc__last_log "$hdir/session_latest/logs/gcs_server.out" 6
        if ((rc == 2 && attempt < ${FC_RAY_START_ATTEMPTS:-2})); then
            fc_log "ray start --head exited during startup (attempt $attempt); trying again"
            fc__stop_tree "the failed Ray head" "$(fc__pid_id ray-head)" TERM 20
            continue
        fi
        ((rc == 2)) && fc_die "ray start --head exited (log: $logf; Ray's logs: $hdir/session_latest/logs)"
        fc_die "the Ray head did not start within $FC_START_TIMEOUT_S s (log: $logf)"
    done
    fc_log "Ray head: $RAY_ADDRESS, pid $hpid, temp dir $hdir (log: $logf)"
    if ((${#FC_NODES[@]} > 1)); then
        {
            printf 'exec ray start --block --address %q --temp-dir %q/"$FC_NODE" --disable-usage-stats' "$RAY_ADDRESS" "$tmp"
            [[ -n $FC_WORKERS_PER_NODE ]] && printf ' --num-cpus %q' "$FC_WORKERS_PER_NODE"
            printf ' %s\n' "${FC_RAY_WORKER_ARGS:-}"
        } >"$FC_RUN_DIR/ray-node.sh"
        fc__write_job_env
        for ((i = 1; i < ${#FC_NODES[@]}; i++)); do fc__launch_role ray-node "$i"; done
        if ! fc__wait_cluster wait-ray "$RAY_ADDRESS" "${#FC_NODES[@]}" "$FC_START_TIMEOUT_S"; then
            for ((i = 1; i < ${#FC_NODES[@]}; i++)); do fc__last_log "$FC_LOG_DIR/ray-node-${FC_NODES[$i]}.log" 8; done
            fc_die "Ray cluster not ready: $FC__WAIT_MSG"
        fi
        fc_log "$FC__WAIT_MSG"
    fi
}

# ---------------------------------------------------------------------------------------------
# the user's script, signals, the stop sequence

fc__on_signal() {
    [[ -n $FC__SIGNAL ]] && return
    FC__SIGNAL=$1
    fc_log "received SIG$1: stopping the job (the pipeline is drained first)"
}

fc__run_script() {
    local engine=$1 cmd
    if [[ $FC_SCRIPT != *.py && -x $FC_SCRIPT ]]; then
        cmd=("$FC_SCRIPT") # an executable (a shell script running several steps...): run as it is
    elif [[ $engine == ray ]] && fc__bool "$FC_RAY_WRAP"; then
        cmd=("$FC_PYTHON" "$FC_LIB_DIR/ray_driver.py" "$FC_SCRIPT")
    else
        cmd=("$FC_PYTHON" "$FC_SCRIPT")
    fi
    cmd+=("${FC__SCRIPT_ARGS[@]}")
    fc_log "running ${cmd[*]}"
    fc__start script "" "${cmd[@]}"
    local pid=$FC__PID id=$FC__ID rc
    wait "$pid" # returns when the script exits, or early when a trapped signal arrives
    rc=$?
    if [[ -n $FC__SIGNAL ]] && fc__live "$id"; then
        FC__SCRIPT_RC=$((128 + $(kill -l "$FC__SIGNAL")))
        fc__stop_script
        return
    fi
    FC__SCRIPT_RC=$rc
    fc_log "the script exited with status $rc"
}

# SIGINT first (Python raises KeyboardInterrupt: with-blocks close, Flowcept flushes), then SIGTERM
fc__stop_script() {
    local id
    id=$(fc__pid_id script) || return 0
    fc__live "$id" || return 0
    fc_log "stopping the script (SIGINT, SIGTERM after ${FC_SCRIPT_GRACE_S} s)"
    kill -INT "${id%%:*}" 2>/dev/null
    if ! fc__wait_gone "$FC_SCRIPT_GRACE_S" "$id"; then
        fc__stop_tree "the script" "$id" TERM 10
    fi
    wait "${id%%:*}" 2>/dev/null
}

fc__finish() {
    local rc=$?
    [[ -n $FC__FINISHING ]] && return
    FC__FINISHING=1
    trap '' USR1 TERM INT HUP # already stopping: a second signal must not cut the drain short
    [[ -n $FC__SIGNAL && -z $FC__SCRIPT_RC ]] && FC__RC=${FC__RC:-$((128 + $(kill -l "$FC__SIGNAL")))}
    if [[ -n $FC__SCRIPT_RC ]]; then rc=$FC__SCRIPT_RC; elif [[ -n $FC__RC ]]; then rc=$FC__RC; fi
    if [[ -z $FC_RUN_DIR ]]; then
        exit "$rc"
    fi
    fc_log "stopping (status $rc)"
    fc__started timer && fc__signal TERM $(fc__group_ids "$(fc__pid_id timer)") # the timer and its sleep
    fc__started script && fc__stop_script
    if [[ $FC_CONSUMER == actor ]] && fc__started ray-head && [[ -n $FC__ACTOR ]]; then
        fc_log "stopping the Ray consumer actor (it persists what it holds first)"
        fc__ray_consumer_cli stop >>"$FC_LOG_DIR/consumer.log" 2>&1 || fc_log "WARNING: the consumer actor did not stop cleanly (log: $FC_LOG_DIR/consumer.log)"
    fi
    fc__stop_role dask-worker
    fc__stop_role ray-node
    fc__started dask-scheduler && fc__stop_tree "the Dask scheduler" "$(fc__pid_id dask-scheduler)" TERM "$FC_STOP_TIMEOUT_S"
    fc__started ray-head && fc__stop_tree "the Ray head" "$(fc__pid_id ray-head)" TERM "$FC_STOP_TIMEOUT_S"
    if fc__started consumer; then
        # SIGTERM: the consumer persists and acknowledges everything still in the stream, then exits
        fc__stop_tree "the consumer (drained)" "$(fc__pid_id consumer)" TERM $((FC_STOP_TIMEOUT_S + 30))
        wait "$(fc__pid consumer)" 2>/dev/null
        local crc=$?
        ((crc != 0)) && fc_log "WARNING: the consumer exited with status $crc (log: $FC_LOG_DIR/consumer.log)"
        tail -n 1 "$FC_LOG_DIR/consumer.log" 2>/dev/null | sed 's/^/[flowcept-job] consumer: /' >&2
    fi
    if [[ $FC_TRANSPORT != direct && $FC_TRANSPORT != ray_actor ]] && fc__started consumer; then
        flowcept-dist status 2>&1 | sed 's/^/[flowcept-job] status: /' >&2
    fi
    fc__started redis && fc__stop_tree "Redis" "$(fc__pid_id redis)" TERM "$FC_STOP_TIMEOUT_S"
    fc__sweep
    fc__summary "$rc"
    exit "$rc"
}

# After the stop sequence, on this node: processes carrying the job's tag, or holding files open in
# Ray's temp dir of the job, outlived it: they are named in a WARNING and ended. Processes with files
# open in the job directory (a `tail -f` of a log?) are only named.
fc__sweep() {
    local left others ray_dir=
    fc__started ray-head && ray_dir=$FC_RAY_TMPDIR
    left=$(export -n FC_JOB_TAG; { fc__job_pids tag; fc__job_pids files $ray_dir; } | sort -u)
    if [[ -n $left ]]; then
        fc_log "WARNING: processes of this job outlived the stop sequence: $(fc__describe $left)"
        fc__signal KILL $(for p in $left; do fc__id "$p"; done)
        FC__LEFTOVERS+=("first node: $(echo $left)")
    fi
    others=$(export -n FC_JOB_TAG; fc__job_pids files "$FC_JOB_DIR" | grep -vxF "$(printf '%s\n' $left)")
    [[ -n $others ]] && fc_log "WARNING: processes still hold files in $FC_JOB_DIR (not stopped): $(fc__describe $others)"
    if ((${#FC__LEFTOVERS[@]})); then
        fc_log "WARNING: not everything stopped cleanly: ${FC__LEFTOVERS[*]}"
    else
        fc_log "every process this job started has stopped"
    fi
}

fc__summary() {
    local rc=$1 line
    case "$FLOWCEPT_STORE_TYPE" in
    mongo) fc_log "records: MongoDB store (FC_STORE); query with FLOWCEPT_STORE_TYPE=mongo FLOWCEPT_STORE_MONGO_URI=... flowcept-dist workflows" ;;
    *) fc_log "records: $FLOWCEPT_STORE_LMDB_PATH   (query: FLOWCEPT_STORE_LMDB_PATH=$FLOWCEPT_STORE_LMDB_PATH flowcept-dist workflows)" ;;
    esac
    [[ $FC_CONSUMER == none && $FC_TRANSPORT != direct ]] &&
        fc_log "records went to the existing $FC_TRANSPORT; the service's consumer persists them"
    fc_log "logs: $FC_LOG_DIR"
    if [[ ${FLOWCEPT_STORE_TYPE:-lmdb} != lmdb || -e $FLOWCEPT_STORE_LMDB_PATH/data.mdb ]]; then
        if line=$(fc__py summary 2>&1); then
            fc_log "summary: job $FC_JOB_ID exit $rc; $line"
        else
            fc_log "summary: job $FC_JOB_ID exit $rc; could not read the store: $line"
        fi
    else
        fc_log "summary: job $FC_JOB_ID exit $rc; no records were stored"
    fi
}

# ---------------------------------------------------------------------------------------------
# entry point of the templates

fc_job() {
    local engine=$1
    [[ $engine == dask || $engine == ray ]] || fc_die "fc_job: engine must be dask or ray"
    FC__SIGNAL= FC__RC= FC__SCRIPT_RC= FC__FINISHING= FC_RUN_DIR= FC__ACTOR=
    FC__STARTED=() FC__LAUNCHED=() FC__LEFTOVERS=()
    trap fc__finish EXIT
    trap 'fc__on_signal USR1' USR1
    trap 'fc__on_signal TERM' TERM
    trap 'fc__on_signal INT' INT
    trap 'fc__on_signal HUP' HUP
    FC_LIB_FILE=$(fc__lib_file)
    FC_LIB_DIR=$(dirname "$FC_LIB_FILE")
    if [[ -n ${FC_SETUP:-} ]]; then
        eval "$FC_SETUP" || fc_die "FC_SETUP failed: $FC_SETUP"
    fi
    fc__allocation
    fc__defaults
    fc__preflight "$engine"
    fc__dirs
    export FC_JOB_TAG="flowcept-$FC_JOB_ID-$$-$RANDOM$RANDOM"
    fc_log "job $FC_JOB_ID ($FC_BATCH, $engine): ${#FC_NODES[@]} node(s) ${FC_NODES[*]}; first node $FC_HEAD_HOST; job dir $FC_JOB_DIR"
    fc__settings_env "$engine"
    fc__write_job_env
    if [[ -n ${FC_TIME_LIMIT_S:-} ]]; then
        fc__start timer "" "$BASH" -c "sleep $((FC_TIME_LIMIT_S)) && kill -USR1 $$"
        fc_log "time limit: the job stops itself after FC_TIME_LIMIT_S=$((FC_TIME_LIMIT_S)) s (as on SIGUSR1)"
    fi
    fc__start_transport
    [[ $FC_CONSUMER == process ]] && fc__start_consumer_process
    if [[ $engine == dask ]]; then
        fc__start_dask
    else
        fc__start_ray
        if [[ $FC_CONSUMER == actor ]]; then
            local msg
            FC__ACTOR=1
            msg=$(fc__ray_consumer_cli start 2>&1) || { FC__ACTOR=; fc_die "the Ray consumer actor did not start: $msg"; }
            fc_log "${msg##*$'\n'}"
        fi
    fi
    [[ -n $FC__SIGNAL ]] && fc_die "interrupted by SIG$FC__SIGNAL before the script started"
    fc__run_script "$engine"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    case "${1:-}" in
    node-agent)
        shift
        fc_node_agent "$@"
        ;;
    *)
        echo "usage: source flowcept-job.sh (from a template), or: bash flowcept-job.sh node-agent JOB_DIR ROLE NODE" >&2
        exit 2
        ;;
    esac
fi
