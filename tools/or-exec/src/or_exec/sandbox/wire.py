"""What the sandbox parent and the pool exchange, and how a job's output is kept."""

from __future__ import annotations

import socket
import struct
from collections import deque
from typing import Any

import orjson

HEADER = struct.Struct(">I")


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    """One message: 4-byte big-endian length + JSON."""
    data = orjson.dumps(message)
    sock.sendall(HEADER.pack(len(data)) + data)


def send_failure(sock: socket.socket, job_id: Any, tier: str, message: str) -> None:
    """The result of a job that could not start: its own error, with the reason."""
    send(
        sock,
        {
            "job": job_id,
            "status": "error",
            "exit_code": None,
            "stdout": "",
            "stderr": message + "\n",
            "seconds": 0.0,
            "tier": tier,
            "message": message,
        },
    )


class Capture:
    """Keeps the head and tail of a stream, counting everything produced."""

    def __init__(self, cap: int):
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail.append(data)
            self.tail_len += len(data)
            while self.tail_len - len(self.tail[0]) >= self.half:
                self.tail_len -= len(self.tail.popleft())

    def text(self) -> tuple[str, bool]:
        tail = b"".join(self.tail)[-self.half :] if self.tail else b""
        if self.total <= len(self.head) + len(tail):
            return (bytes(self.head) + tail).decode("utf-8", "replace"), False
        dropped = self.total - len(self.head) - len(tail)
        marker = f"\n[... {dropped} bytes of output cut ...]\n".encode()
        return (bytes(self.head) + marker + tail).decode("utf-8", "replace"), True
