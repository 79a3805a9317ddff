"""MLflow integration: every run of a tracking URI (an mlruns directory, a SQL database, an
``mlflow server``) becomes a task, captured while it runs and after, through MLflow's client.

- :mod:`.adapter`: :class:`~.adapter.MLflowAdapter` (registered as the ``mlflow`` adapter:
  ``Flowcept(adapters=["mlflow"])``, ``flowcept-dist watch mlflow URI``);
- :mod:`.records`: how a run maps to a task record;
- :mod:`.context`: the run context provider MLflow loads through its
  ``mlflow.run_context_provider`` entry point: runs started (``mlflow.start_run``) while a
  ``Flowcept`` context is active carry the tag ``flowcept.workflow_id``.

Importing this package imports no MLflow; the adapter imports it when it opens. See docs/adapters.md.
"""
