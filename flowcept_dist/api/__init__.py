"""What user code calls: the ``Flowcept`` context, decorators, loops, explicit tasks, the query API.

Every capture point (decorators, Ray tasks, torch hooks) records a task through the one
begin/end in :mod:`flowcept_dist.api.task`; engines are reached only through the link
registry in :mod:`flowcept_dist.api.links`, so this package imports no engine.
"""
