"""``import flowcept_dist.ray``: Flowcept capture for Ray.

The public name of :mod:`flowcept_dist.integrations.ray` (where the code and its documentation
live): :func:`runtime_env`, :func:`instrument`, :func:`ray_task`, :func:`drain`, the consumer
actor and the task-event watcher. Importing it does not import ray; its functions do.
"""

from flowcept_dist.integrations.ray import (
                                            SETUP_HOOK,
                                            consumer_status,
                                            drain,
                                            instrument,
                                            is_instrumented,
                                            ray_task,
                                            runtime_env,
                                            start_consumer,
                                            stop_consumer,
                                            uninstrument,
                                            watch_tasks,
)

__all__ = ["runtime_env", "instrument", "uninstrument", "is_instrumented", "ray_task", "drain", "start_consumer",
           "stop_consumer", "consumer_status", "watch_tasks", "SETUP_HOOK"]
