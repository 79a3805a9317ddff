"""``flowcept.commons.flowcept_dataclasses.*``: records are dicts here; these read as Flowcept's objects."""

from __future__ import annotations

from flowcept_dist.api.objects import BlobObject
from flowcept_dist.api.query import AttrDict, WorkflowObject

__all__ = ["TaskObject", "WorkflowObject", "BlobObject"]


class TaskObject(AttrDict):
    """A task record (Flowcept's ``TaskObject``): a dict with attribute access."""

    @classmethod
    def from_dict(cls, d: dict) -> "TaskObject":
        return cls(d)
