"""``from flowcept_dist.dask import instrument``: Flowcept capture for a Dask cluster.

The public name of :mod:`flowcept_dist.integrations.dask` (where the code and its documentation
live): :func:`instrument`, :func:`link_client`, :func:`flush`, :func:`workflow_annotations`, and
the plugins. Importing it imports dask; ``import flowcept_dist`` never does.
"""

from flowcept_dist.integrations.dask import (
                                             CAMPAIGN_ANNOTATION,
                                             WORKFLOW_ANNOTATION,
                                             DaskLink,
                                             flush,
                                             instrument,
                                             link_client,
                                             workflow_annotations,
)
from flowcept_dist.integrations.dask.scheduler import FlowceptSchedulerPlugin
from flowcept_dist.integrations.dask.worker import FlowceptWorkerPlugin

__all__ = ["instrument", "link_client", "flush", "workflow_annotations", "DaskLink", "FlowceptSchedulerPlugin",
           "FlowceptWorkerPlugin", "WORKFLOW_ANNOTATION", "CAMPAIGN_ANNOTATION"]
