"""Tributary's shared Lambda layer: the runtime library every function imports."""
