"""Flowcept's module paths, for code that imports them: ``from flowcept_dist.commons.vocabulary import Status``.

Flowcept 1.0.3 programs and tests import more than its top-level names: ``flowcept.configs``,
``flowcept.commons.utils``, ``flowcept.instrumentation.flowcept_task``,
``flowcept.flowcept_api.flowcept_controller``... With the import renamed to ``flowcept_dist`` these
paths resolve to the modules of this package (a table in ``flowcept_dist/__init__.py`` maps each
path to one of them; nothing is imported until the program imports the path). They re-export
this project's objects under Flowcept's names; ``configs`` computes Flowcept's constants from the
settings in effect when read. What each name is here: docs/migrating-from-flowcept.md.
"""
