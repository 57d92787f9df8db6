"""The OpenAPI 3 document of `or-exec serve` (served at GET /openapi.json). Built from the
same field lists the server validates with, so the two cannot drift; a test compares it with a
live server and with the API section of docs/or-exec.md."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from or_common.records import EXEC_STATUSES

from .limits import ExecResult, Limits

_LIMIT_DOCS = {
    "timeout": "wall-clock seconds from the end of the sandbox's setup",
    "memory_mb": "memory of all the job's processes together (cgroup; else per process)",
    "cpu_seconds": "CPU seconds (default: timeout + 1)",
    "file_mb": "largest file the job may write",
    "processes": "processes the job's uid may run at once",
    "open_files": "open files per process",
    "max_output": "bytes of stdout and of stderr kept (head and tail)",
    "flood_bytes": "a job printing more than this is killed",
}


def _limits_schema() -> dict[str, Any]:
    props = {}
    for f in fields(Limits):
        kind = "number" if f.name == "timeout" else "integer"
        props[f.name] = {"type": kind, "exclusiveMinimum": 0, "description": _LIMIT_DOCS[f.name]}
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "description": "Asked limits: each is lowered to the server's ceiling, never raised.",
    }


_FILES = {
    "type": "object",
    "additionalProperties": {"type": "string", "format": "byte"},
    "description": "file name (relative to the job's working directory) -> base64 content",
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _result_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        "status": {"type": "string", "enum": list(EXEC_STATUSES)},
        "exit_code": {"type": "integer", "nullable": True},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "seconds": {"type": "number"},
        "truncated": {"type": "boolean"},
        "tier": {"type": "string"},
        "timings": {
            "type": "object",
            "properties": {k: {"type": "number"} for k in ("fork", "setup", "program", "teardown")},
        },
        "message": {"type": "string"},
        "files": {
            "type": "object",
            "additionalProperties": {"type": "string", "format": "byte", "nullable": True},
            "description": "the fetched files, base64; null for one missing or over the cap",
        },
        "limits": {"$ref": "#/components/schemas/Limits"},
    }
    assert set(props) == {f.name for f in fields(ExecResult)}, "ExecResult changed: update"
    return {"type": "object", "properties": props, "required": ["status", "stdout", "stderr"]}


def _responses(ok: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "200": {"description": "the job ran (whatever its status)", "content": _json(ok)},
    }
    for code, text in (extra or {}).items():
        out[code] = {"description": text, "content": _json(_ERROR)}
    return out


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_POST_ERRORS = {
    "400": "a malformed request (the error names the field, or lists the valid fields)",
    "401": "a token is required and was not sent, or is wrong",
    "408": "the request body took longer than 30 s",
    "503": "the queue or the connection cap is full: retry after Retry-After seconds",
}


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.0 document."""
    run_request = {
        "type": "object",
        "additionalProperties": False,
        "required": ["code"],
        "properties": {
            "code": {"type": "string", "description": "the Python program"},
            "prelude": {
                "type": "array",
                "items": {"type": "string"},
                "description": "earlier blocks replayed quietly first (notebook style)",
            },
            "limits": {"$ref": "#/components/schemas/Limits"},
            "stdin": {"type": "string", "nullable": True},
            "files": _FILES,
            "fetch": {
                "type": "array",
                "items": {"type": "string"},
                "description": "files to read back from the working directory after the run",
            },
        },
    }
    fusion_request = {
        "type": "object",
        "additionalProperties": False,
        "required": ["code"],
        "properties": {
            "code": {"type": "string"},
            "language": {"type": "string", "enum": ["python", "python3"]},
            "compile_timeout": {"type": "number", "description": "accepted, ignored"},
            "run_timeout": {"type": "number", "description": "seconds (-> limits.timeout)"},
            "memory_limit_MB": {"type": "number", "description": "(-> limits.memory_mb)"},
            "stdin": {"type": "string", "nullable": True},
            "files": _FILES,
            "fetch_files": {"type": "array", "items": {"type": "string"}},
        },
    }
    fusion_response = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["Success", "Failed", "SandboxError"]},
            "message": {"type": "string", "nullable": True},
            "compile_result": {"nullable": True, "description": "always null (no compile step)"},
            "run_result": {
                "type": "object",
                "nullable": True,
                "properties": {
                    "status": {
                        "type": "string",
                        "enum": ["Finished", "TimeLimitExceeded", "Error"],
                    },
                    "execution_time": {"type": "number"},
                    "return_code": {"type": "integer", "nullable": True},
                    "stdout": {"type": "string"},
                    "stderr": {"type": "string"},
                },
            },
            "executor_pod_name": {"nullable": True},
            "files": _FILES,
            "or_exec": {
                "type": "object",
                "description": "beyond SandboxFusion: or-exec's own status, tier and limits",
                "properties": {
                    "status": {"type": "string", "enum": list(EXEC_STATUSES)},
                    "tier": {"type": "string", "nullable": True},
                    "limits": {"$ref": "#/components/schemas/Limits"},
                },
            },
        },
    }
    health = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "protections": {"type": "object", "additionalProperties": {"type": "string"}},
            "workers": {"type": "integer"},
            "ceilings": {"$ref": "#/components/schemas/Limits"},
            "queue": {
                "type": "object",
                "properties": {"max": {"type": "integer"}, "in_flight": {"type": "integer"}},
            },
            "dialects": {"type": "array", "items": {"type": "string"}},
            "auth": {"type": "string", "enum": ["bearer token", "none"]},
        },
    }
    stats = {
        "type": "object",
        "properties": {
            "jobs": {"type": "integer"},
            "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "by_tier": {"type": "object", "additionalProperties": {"type": "integer"}},
            "respawns": {"type": "integer"},
            "retries": {"type": "integer"},
            "workers": {"type": "integer"},
        },
    }
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "or-exec serve",
            "version": "1",
            "description": "A hardened Python sandbox for model-written solver code, in or-exec's "
            "own dialect (/run) and SandboxFusion's (/run_code).",
        },
        "paths": {
            "/run": {
                "post": {
                    "summary": "Run a program (or-exec's dialect)",
                    "security": secured,
                    "requestBody": {"required": True, "content": _json(run_request)},
                    "responses": _responses({"$ref": "#/components/schemas/Result"}, _POST_ERRORS),
                }
            },
            "/run_code": {
                "post": {
                    "summary": "Run a program (SandboxFusion's dialect, as verl calls it)",
                    "security": secured,
                    "requestBody": {"required": True, "content": _json(fusion_request)},
                    "responses": _responses(fusion_response, _POST_ERRORS),
                }
            },
            "/health": {
                "get": {
                    "summary": "Protections, ceilings, workers and queue (no token needed)",
                    "security": [],
                    "responses": _responses(health),
                }
            },
            "/stats": {
                "get": {
                    "summary": "Jobs by status and tier since the start",
                    "security": secured,
                    "responses": _responses(stats, {"401": _POST_ERRORS["401"]}),
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document (no token needed)",
                    "security": [],
                    "responses": _responses({"type": "object"}),
                }
            },
        },
        "components": {
            "schemas": {"Limits": _limits_schema(), "Result": _result_schema()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
