"""Keep stdout for data only.

Libraries such as vLLM, transformers or CBC print to fd 1. While a tool runs, fd 1 points at
stderr and records go to a saved duplicate of the real stdout, so nothing a library prints can
corrupt the stream.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO, cast


@contextmanager
def stdout_guard() -> Iterator[BinaryIO]:
    """Yield a binary stream that reaches the real stdout; everything else printed to stdout
    (Python-level or fd-level) goes to stderr until the block ends."""
    py_stdout = sys.stdout
    try:
        fd = py_stdout.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):
        fd = None  # an in-memory stdout (e.g. click's CliRunner): redirect at the Python level only
    if fd is None:
        real = cast(BinaryIO, getattr(py_stdout, "buffer", py_stdout))
        sys.stdout = sys.stderr
        try:
            yield real
        finally:
            sys.stdout = py_stdout
        return
    py_stdout.flush()
    saved = os.dup(fd)
    os.dup2(err_fd, fd)
    real = os.fdopen(saved, "wb", buffering=0, closefd=True)
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = py_stdout
        try:
            os.dup2(saved, fd)
        finally:
            with suppress(OSError):
                real.close()
