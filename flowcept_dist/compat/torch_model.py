"""``flowcept.instrumentation.flowcept_torch``. Importing this module imports torch."""

from __future__ import annotations

from flowcept_dist.integrations.torch.model_class import FlowceptBatchLoop, FlowceptEpochLoop, flowcept_torch
from flowcept_dist.integrations.torch.models import model_profile as get_torch_model_profile

__all__ = ["flowcept_torch", "FlowceptEpochLoop", "FlowceptBatchLoop", "get_torch_model_profile"]
