#!/usr/bin/env bash
# Stop what start-services.sh started, by its PID files: first the consumer (SIGTERM: it persists and
# acknowledges what it has read, then exits), then Redis (SIGTERM: it flushes its append-only file).
#
# Variables: FC_SERVICES_DIR [~/.flowcept/services], FC_STOP_TIMEOUT_S [60]
# A PID file whose process is gone, or is no longer the expected program, is removed without killing
# anything.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/flowcept-job.sh
source "$HERE/../lib/flowcept-job.sh"

: "${FC_SERVICES_DIR:=$HOME/.flowcept/services}" "${FC_STOP_TIMEOUT_S:=60}"
dir=$FC_SERVICES_DIR
status=0

# $1 = name, $2 = expected word in its command line
stop_one() {
    local name=$1 word=$2 f=$dir/$1.pid pid st
    [[ -f $f ]] || { fc_log "$name: not running (no $f)"; return 0; }
    read -r pid st <"$f"
    # same PID, same start time (PIDs are reused), expected program: only then is it ours
    if ! fc__live "$pid:$st" || ! grep -qa -- "$word" "/proc/$pid/cmdline" 2>/dev/null; then
        fc_log "$name: pid $pid is not running (stale PID file removed)"
        rm -f "$f"
        return 0
    fi
    fc__stop_tree "$name" "$pid:$st" TERM "$FC_STOP_TIMEOUT_S" || status=1
    rm -f "$f"
}

stop_one consumer consume
stop_one redis redis-server
exit "$status"
