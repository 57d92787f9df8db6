"""Completed model requests, cached by (id, sample, request hash) in an append-only JSONL file,
so a run that crashed mid-trajectory replays what it already paid for."""

from __future__ import annotations

import os
from typing import Any

from or_common.jsonl import BadLine, dumps, read_records, repair_tail

from .engine import Completion


class RequestCache:
    def __init__(self, path: str, skip: set | frozenset = frozenset()):
        """Load the entries of `path`, except those of trajectories in `skip` (already written:
        they will not be generated again, so their requests need no memory)."""
        self.path = path
        self.entries: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
        self.hits = 0
        if os.path.exists(path):
            repair_tail(path)
            for item in read_records([path]):
                if isinstance(item, BadLine):
                    continue
                try:
                    key = (str(item["id"]), int(item["sample"]))
                    completion = item["completion"]
                    if key not in skip and isinstance(completion.get("text"), str):
                        self.entries.setdefault(key, {})[str(item["hash"])] = completion
                except (AttributeError, KeyError, TypeError, ValueError):
                    continue
        self._fh = open(path, "ab", buffering=0)

    def get(self, key: tuple[str, int], digest: str) -> Completion | None:
        hit = self.entries.get(key, {}).get(digest)
        if hit is None:
            return None
        self.hits += 1
        return Completion.from_dict(hit, cached=True)

    def put(self, key: tuple[str, int], digest: str, completion: Completion) -> None:
        entry = completion.to_dict()
        self.entries.setdefault(key, {})[digest] = entry
        self._fh.write(dumps({"id": key[0], "sample": key[1], "hash": digest, "completion": entry}))

    def forget(self, key: tuple[str, int]) -> None:
        """Drop a finished trajectory's entries from memory (they stay on disk)."""
        self.entries.pop(key, None)

    def close(self) -> None:
        self._fh.close()
