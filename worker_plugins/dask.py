"""``dask worker --preload worker_plugins.dask``: Flowcept capture on every Dask worker.

The public name of :mod:`flowcept_dist.integrations.dask.worker` (where the code and its
documentation live). ``client.register_plugin(FlowceptWorkerPlugin())`` works too.
"""

from flowcept_dist.integrations.dask.worker import FlowceptWorkerPlugin, dask_setup

__all__ = ["FlowceptWorkerPlugin", "dask_setup"]
