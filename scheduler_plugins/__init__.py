"""scheduler_plugins package."""
