#!/usr/bin/env bash
# Start Redis and a Flowcept consumer outside a batch job: on a login or service node, for many jobs.
#
#   deploy/services/start-services.sh           # Redis (append-only) + `flowcept-dist consume` in the background
#   FC_REDIS=$(hostname):6379 FC_CONSUMER=none FC_SCRIPT=$PWD/workflow.py sbatch deploy/slurm/dask.sbatch
#   deploy/services/stop-services.sh            # the consumer persists what is left, then Redis stops
#
# State lives in FC_SERVICES_DIR: PID files (redis.pid, consumer.pid), logs, the Redis data and
# services.env, the settings a job or a shell needs to use these services (KEY=VALUE lines, also
# valid as a systemd EnvironmentFile):   set -a; source ~/.flowcept/services/services.env; set +a
# Running it again starts only what is not running. Processes are detached (setsid, nohup): they
# outlive the login session; stop-services.sh ends them by their PID files.
#
# Variables:
#   FC_SERVICES_DIR     state directory                                [~/.flowcept/services]
#   FC_SERVICES_HOST    the address jobs use to reach Redis            [hostname]
#   FC_REDIS_PORT       Redis port                                     [6379]
#   FC_REDIS_BIND       addresses Redis listens on                     [0.0.0.0: compute nodes must reach it]
#   FC_REDIS_PASSWORD   Redis password                                 [generated once, kept in services.env]
#   FC_STORE            LMDB directory or mongodb:// URI               [~/.flowcept/lmdb]
#   FC_CONSUMER         process | none (only Redis)                    [process]
#   FC_START_TIMEOUT_S  longest wait for each service                  [60]

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/flowcept-job.sh
source "$HERE/../lib/flowcept-job.sh"

: "${FC_SERVICES_DIR:=$HOME/.flowcept/services}" "${FC_SERVICES_HOST:=$(hostname)}"
: "${FC_REDIS_PORT:=6379}" "${FC_REDIS_BIND:=0.0.0.0}" "${FC_STORE:=$HOME/.flowcept/lmdb}"
: "${FC_CONSUMER:=process}" "${FC_START_TIMEOUT_S:=60}"
FC_LIB_DIR=$HERE/../lib
FC_PYTHON=$(command -v python3 || command -v python) || fc_die "no python on PATH"
[[ $FC_CONSUMER == process || $FC_CONSUMER == none ]] || fc_die "FC_CONSUMER must be process or none"
command -v redis-server >/dev/null || fc_die "redis-server is not on PATH"
[[ $FC_CONSUMER == none ]] || command -v flowcept-dist >/dev/null || fc_die "flowcept-dist is not on PATH (activate its environment)"

dir=$FC_SERVICES_DIR
mkdir -p "$dir/redis" "$dir/logs" && chmod 700 "$dir" || fc_die "cannot create $dir"
envf=$dir/services.env

# the password survives restarts: reuse the one in services.env
if [[ -z ${FC_REDIS_PASSWORD:-} && -f $envf ]]; then
    FC_REDIS_PASSWORD=$(sed -n 's/^FLOWCEPT_REDIS_PASSWORD=//p' "$envf")
fi
: "${FC_REDIS_PASSWORD:=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}"

case "$FC_STORE" in
mongodb://* | mongodb+srv://*) store_lines=("FLOWCEPT_STORE_TYPE=mongo" "FLOWCEPT_STORE_MONGO_URI=$FC_STORE") ;;
*)
    mkdir -p "$FC_STORE" || fc_die "cannot create FC_STORE=$FC_STORE"
    FC_STORE=$(cd "$FC_STORE" && pwd)
    store_lines=("FLOWCEPT_STORE_TYPE=lmdb" "FLOWCEPT_STORE_LMDB_PATH=$FC_STORE") ;;
esac
(
    umask 077
    printf '%s\n' "# Flowcept services on $FC_SERVICES_HOST (start-services.sh). Load with: set -a; source $envf; set +a" \
        "FLOWCEPT_TRANSPORT_TYPE=redis_streams" "FLOWCEPT_REDIS_HOST=$FC_SERVICES_HOST" \
        "FLOWCEPT_REDIS_PORT=$FC_REDIS_PORT" "FLOWCEPT_REDIS_PASSWORD=$FC_REDIS_PASSWORD" "${store_lines[@]}" \
        "FLOWCEPT_TRANSPORT_STATS_DIR=$dir/stats" \
        "# for the job templates: use this Redis, and let this consumer persist" \
        "FC_REDIS=$FC_SERVICES_HOST:$FC_REDIS_PORT" "FC_CONSUMER=none" >"$envf"
)
while IFS= read -r line; do # this script's processes need the FLOWCEPT_* settings only
    [[ $line == FLOWCEPT_* ]] && export "${line?}"
done <"$envf"

# $1 = name, $2 = expected word in its command line; true if its PID file ("PID STARTTIME") names a
# live process: same PID, same start time (PIDs are reused), expected program
running() {
    local pid st
    [[ -f $dir/$1.pid ]] || return 1
    read -r pid st <"$dir/$1.pid"
    fc__live "$pid:$st" && grep -qa -- "$2" "/proc/$pid/cmdline" 2>/dev/null
}

# record "PID STARTTIME" of a process just started
record() { local id; id=$(fc__id "$2") || id="$2:gone"; echo "${id%%:*} ${id#*:}" >"$dir/$1.pid"; }

if running redis redis-server; then
    fc_log "Redis already running: pid $(fc__pid_of_file "$dir/redis.pid")"
else
    (
        umask 077
        printf '%s\n' "port $FC_REDIS_PORT" "bind $FC_REDIS_BIND" "dir $dir/redis" "daemonize no" \
            "appendonly yes" "appendfsync everysec" 'save ""' "logfile $dir/logs/redis.log" \
            "requirepass $FC_REDIS_PASSWORD" "maxmemory-policy noeviction" >"$dir/redis/redis.conf"
    )
    nohup setsid redis-server "$dir/redis/redis.conf" >>"$dir/logs/redis.out" 2>&1 </dev/null &
    record redis $!
    if ! msg=$(fc__py wait-transport "$FC_START_TIMEOUT_S" 2>&1); then
        fc__last_log "$dir/logs/redis.log"
        fc_die "Redis did not answer on $FC_SERVICES_HOST:$FC_REDIS_PORT: $msg (stop what started: $HERE/stop-services.sh)"
    fi
    fc_log "Redis: pid $(fc__pid_of_file "$dir/redis.pid"), $msg"
fi

if [[ $FC_CONSUMER == process ]]; then
    if running consumer "consume"; then
        fc_log "consumer already running: pid $(fc__pid_of_file "$dir/consumer.pid")"
    else
        logf=$dir/logs/consumer.log
        : >>"$logf"
        start_line=$(wc -l <"$logf")
        # the same --name after a restart: the consumer resumes the entries it had not acknowledged
        nohup setsid flowcept-dist consume --name "$(hostname)-service" >>"$logf" 2>&1 </dev/null &
        pid=$!
        record consumer "$pid"
        if ! fc__wait_for "the consumer" "$(fc__id "$pid")" "$FC_START_TIMEOUT_S" \
            bash -c 'tail -n +$(($1 + 1)) "$2" | grep -q "^consuming "' _ "$start_line" "$logf"; then
            fc__last_log "$logf"
            fc_die "the consumer did not start (log: $logf; stop what started: $HERE/stop-services.sh)"
        fi
        fc_log "consumer: pid $pid, into ${FLOWCEPT_STORE_LMDB_PATH:-MongoDB} (log: $logf)"
    fi
fi
fc_log "services ready; settings for jobs and shells: $envf"
