"""Tags MLflow adds to each run a process starts while a ``Flowcept`` context is active.

MLflow loads :class:`FlowceptRunContext` through its ``mlflow.run_context_provider`` entry
point (declared in pyproject.toml) and asks it, at each fluent ``mlflow.start_run``, whether it
is in context and for its tags. The tags link the run to the workflow wherever the run is later
read (the mlflow adapter of this process, or a ``flowcept-dist watch mlflow`` elsewhere):

- ``flowcept.workflow_id`` and ``flowcept.campaign_id``: the innermost active workflow;
- ``flowcept.parent_task_id``: the captured task running in this thread (a ``@flowcept_task``
  function, a torch training scope), when there is one.

Runs made with ``MlflowClient.create_run`` do not go through context providers: set the tag
yourself (``client.set_tag(run_id, "flowcept.workflow_id", fc.workflow_id)``).
"""

from __future__ import annotations

from mlflow.tracking.context.abstract_context import RunContextProvider

from flowcept_dist.api.context import current_workflow
from flowcept_dist.api.task import current_task_id
from flowcept_dist.integrations.mlflow.records import CAMPAIGN_TAG, PARENT_TASK_TAG, WORKFLOW_TAG


class FlowceptRunContext(RunContextProvider):
    """In context while a ``Flowcept`` context is active in this process. Never raises."""

    def in_context(self) -> bool:
        return current_workflow() is not None

    def tags(self) -> dict:
        wf = current_workflow()
        if wf is None:
            return {}
        tags = {WORKFLOW_TAG: wf.workflow_id}
        if wf.campaign_id:
            tags[CAMPAIGN_TAG] = str(wf.campaign_id)
        parent = current_task_id.get()
        if parent:
            tags[PARENT_TASK_TAG] = parent
        return tags
