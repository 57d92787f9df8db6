"""or-exec: a fast, hardened sandbox for model-written Python.

    from or_exec import Pool, SyncPool, RemotePool, SyncRemotePool, Limits

`Pool` / `SyncPool` run jobs on this machine; `RemotePool` / `SyncRemotePool` talk to
`or-exec serve` (both of its dialects are described at GET /openapi.json).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ExecResult",
    "Limits",
    "Pool",
    "RemotePool",
    "SandboxUnavailable",
    "SyncPool",
    "SyncRemotePool",
]

_WHERE = {
    "ExecResult": "limits",
    "Limits": "limits",
    "Pool": "pool",
    "SyncPool": "pool",
    "RemotePool": "client",
    "SyncRemotePool": "client",
    "SandboxUnavailable": "client",
}


def __getattr__(name: str) -> Any:  # imported on first use: `or-exec --help` stays light
    if name not in _WHERE:
        raise AttributeError(f"module 'or_exec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
