"""Internal commands of the job runner, run by the runner itself (not typed by users):

    python -m flowcept_dist.deploy node-agent JOB_DIR ROLE NODE     (through the launcher, on each node)
    python -m flowcept_dist.deploy wait-dask SCHEDULER_FILE N_WORKERS TIMEOUT_S
    python -m flowcept_dist.deploy wait-ray ADDRESS N_NODES TIMEOUT_S

Users type ``flowcept-dist job dask|ray ...`` (or submit a template of deploy/).
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = __doc__


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "node-agent":
        from flowcept_dist.deploy.agent import run_agent

        return run_agent(Path(argv[1]), argv[2], argv[3])
    if len(argv) == 4 and argv[0] in ("wait-dask", "wait-ray"):
        from flowcept_dist.deploy.checks import main as check

        return check(argv[0], argv[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
