"""``flowcept.commons.vocabulary``: statuses and the subtype vocabularies."""

from __future__ import annotations

from enum import Enum

from flowcept_dist.core.records import Status

__all__ = ["Status", "ML_Types", "PROV_AGENT", "MimeType", "Vocabulary"]


class Vocabulary:
    class Settings:
        ADAPTERS = "adapters"
        KIND = "kind"
        MLFLOW_KIND = "mlflow"
        TENSORBOARD_KIND = "tensorboard"
        DASK_KIND = "dask"


class ML_Types(str, Enum):
    """Subtypes of ML workflows and tasks."""

    WORKFLOW = "ml_workflow"
    DATA_PREP = "dataprep"
    LEARNING = "learning"
    MODEL_SELECTION = "model_selection"


class PROV_AGENT(str, Enum):
    """Subtypes of agentic AI activities (PROV-AGENT)."""

    AI_MODEL_INVOCATION = "ai_model_invocation"
    AGENT_TOOL = "agent_tool"


class MimeType(Enum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    PDF = "application/pdf"
    JSON = "application/json"
    CSV = "text/csv"
    JSONL = "application/x-ndjson"
