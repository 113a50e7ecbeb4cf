"""Compression methods: one class per method in methods/<family>.py, registered by name (methods/registry.py)."""
