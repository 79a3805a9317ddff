#!/usr/bin/env bash
# Start Redis and a Flowcept consumer outside a batch job: on a login or service node, for many jobs.
#
#   deploy/services/start-services.sh           # Redis (append-only) + `flowcept-dist consume`, detached
#   FC_REDIS=$(hostname):6379 FC_CONSUMER=none FC_SCRIPT=$PWD/workflow.py sbatch deploy/slurm/dask.sbatch
#   deploy/services/stop-services.sh            # the consumer persists what is left, then Redis stops
#
# State lives in FC_SERVICES_DIR [~/.flowcept/services]: PID files, logs, the Redis data and
# services.env, the settings a job or a shell needs (KEY=VALUE lines, also a systemd EnvironmentFile):
#   set -a; source ~/.flowcept/services/services.env; set +a
# Running it again starts only what is not running. Variables: FC_SERVICES_DIR, FC_SERVICES_HOST
# [hostname], FC_REDIS_PORT [6379], FC_REDIS_BIND [0.0.0.0], FC_REDIS_PASSWORD [generated once, kept in
# services.env], FC_STORE [~/.flowcept/lmdb], FC_CONSUMER [process | none], FC_START_TIMEOUT_S [60].
# The same as: flowcept-dist job services start
: "${FC_SERVICES_DIR:=$HOME/.flowcept/services}"
export FC_SERVICES_DIR
exec flowcept-dist job services start
