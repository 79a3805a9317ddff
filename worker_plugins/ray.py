"""``runtime_env={"worker_process_setup_hook": "worker_plugins.ray.setup_worker"}``: capture in
every Ray worker process (``flowcept_dist.ray.runtime_env()`` sets it for you).

The public name of :mod:`flowcept_dist.integrations.ray.worker` (where the code and its
documentation live).
"""

from flowcept_dist.integrations.ray.worker import setup_worker, worker_settings

__all__ = ["setup_worker", "worker_settings"]
