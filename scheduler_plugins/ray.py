"""Ray's task events as lifecycle records: ``TaskEventWatcher`` (``flowcept_dist.ray.watch_tasks()``).

The public name of :mod:`flowcept_dist.integrations.ray.watcher` (where the code and its
documentation live).
"""

from flowcept_dist.integrations.ray.watcher import STATUS_OF_STATE, TaskEventWatcher, lifecycle_record

__all__ = ["TaskEventWatcher", "lifecycle_record", "STATUS_OF_STATE"]
