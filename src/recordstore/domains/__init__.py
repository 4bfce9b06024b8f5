"""Built-in registries."""
