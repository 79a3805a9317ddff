"""One room per engine or tool (``dask``, ``ray``, ``torch``), each owning every side of it.

Integrations register themselves with the core (engine links, emitters, summarizers); the
core never imports them. Users reach them through the thin public entry points
``flowcept_dist.dask``, ``flowcept_dist.ray``, ``scheduler_plugins``, ``worker_plugins`` and
``torch_hooks``.
"""
