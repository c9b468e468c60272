"""Re-export of :mod:`clearing.runtime` for the edge (HTTP and CLI)."""

from clearing.runtime import Runtime, build_runtime, get_runtime

__all__ = ["Runtime", "build_runtime", "get_runtime"]
