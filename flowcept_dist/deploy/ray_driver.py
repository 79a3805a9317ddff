"""Run a Ray script with Flowcept capture, without changing the script.

    python -m flowcept_dist.deploy.ray_driver SCRIPT [ARGS...]

The Ray job runner (``flowcept-dist job ray``) runs the user's script through this module (unless
``FC_RAY_WRAP=false``).
It makes every ``ray.init(...)`` of the script pass ``flowcept_dist.ray.runtime_env(base=...)``:
the script's own runtime_env is kept and extended with the worker setup hook and the job's
``FLOWCEPT_*`` settings, and this process's submissions are instrumented. A script that already
passes ``runtime_env=flowcept_dist.ray.runtime_env()`` is unaffected (the call is idempotent).
A runtime_env with another ``worker_process_setup_hook`` is left as it is, with a warning: Ray
runs one hook per job; call ``worker_plugins.ray.setup_worker()`` from yours.

``ray.init()`` without an address joins the job's cluster through ``RAY_ADDRESS``, which the
job runner exports. The script then runs as ``__main__`` (``runpy``), with ``sys.argv`` = SCRIPT ARGS.
"""

from __future__ import annotations

import functools
import os
import runpy
import sys


def _wrap_init():
    import ray

    import flowcept_dist.ray as fray

    original = ray.init
    if getattr(original, "__flowcept_job__", False):
        return

    @functools.wraps(original)
    def init(*args, runtime_env=None, **kwargs):
        try:
            runtime_env = fray.runtime_env(base=runtime_env)
        except ValueError as exc:
            print(f"flowcept-job: Ray workers of this job run without capture: {exc}", file=sys.stderr)
        return original(*args, runtime_env=runtime_env, **kwargs)

    init.__flowcept_job__ = True
    ray.init = init


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m flowcept_dist.deploy.ray_driver SCRIPT [ARGS...]")
    _wrap_init()
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python SCRIPT` would
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
