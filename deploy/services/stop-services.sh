#!/usr/bin/env bash
# Stop what start-services.sh started, by its PID files: first the consumer (SIGTERM: it persists and
# acknowledges what it has read, then exits), then Redis (SIGTERM: it flushes its append-only file).
# A PID file whose process is gone, or is no longer the expected program, is removed without killing
# anything. Variables: FC_SERVICES_DIR [~/.flowcept/services], FC_STOP_TIMEOUT_S [60].
# The same as: flowcept-dist job services stop
exec flowcept-dist job services stop
