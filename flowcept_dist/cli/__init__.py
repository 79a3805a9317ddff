"""The ``flowcept-dist`` command line."""
