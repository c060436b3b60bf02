"""Tributary's development-only tools: the local runtime, producer and consumer. Never shipped to Lambda."""
