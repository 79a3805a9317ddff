"""worker_plugins package."""
