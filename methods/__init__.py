"""Compression methods: one class per method in methods/<family>.py, one conf/method/<name>.yaml each."""
