"""CLI error type, in its own module so ``python -m flowcept_dist.cli.main`` and the console script agree on it."""


class CliError(Exception):
    """A user mistake: printed as one line, exit code 2."""
