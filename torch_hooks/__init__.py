"""torch_hooks package."""
