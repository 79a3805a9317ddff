"""Records, settings, the process pipeline, the batch processor, telemetry, counters, logging, retries.

Imports no engine, broker or database: transports, stores and integrations are found by name
through registries (:mod:`flowcept_dist.core.registry`).
"""
