"""``dask scheduler --preload scheduler_plugins.dask``: Flowcept capture on the Dask scheduler.

The public name of :mod:`flowcept_dist.integrations.dask.scheduler` (where the code and its
documentation live). ``client.register_plugin(FlowceptSchedulerPlugin())`` works too.
"""

from flowcept_dist.integrations.dask.scheduler import FlowceptSchedulerPlugin, dask_setup

__all__ = ["FlowceptSchedulerPlugin", "dask_setup"]
