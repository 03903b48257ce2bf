"""Structured logs: one JSON object per line on stdout (Cloud Logging reads `severity` and
`message`; other keys land in jsonPayload)."""

from __future__ import annotations

import json
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

# Query strings and user:password@ parts of URLs carry tokens. They reach logs not only through
# a `url` field but inside exception texts (requests writes "url: /cb?token=..."), so every
# line is scrubbed, whatever field the text is in.
_QUERY = re.compile(r"\?[^\s\"'<>\\]*=[^\s\"'<>\\]*")
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s\"'@]+@")


def redact(text: str) -> str:
    """`text` without URL query strings and credentials (`?<redacted>`, `<redacted>@`)."""
    return _USERINFO.sub(r"\1<redacted>@", _QUERY.sub("?<redacted>", text))


class JsonLogger:
    def __init__(self, stream: TextIO | None = None, **context: Any) -> None:
        self._stream = stream
        self._context = dict(context)
        self._secrets: list[str] = []
        self._lock = threading.Lock()  # lines from worker threads must not interleave

    def add_secret(self, value: str | None) -> None:
        """Never print this value: every line is scrubbed (defence in depth; we never log it
        on purpose, but an exception message could carry it)."""
        if value:
            self._secrets.append(value)

    def bind(self, **context: Any) -> None:
        self._context.update(context)

    def log(self, severity: str, message: str, **fields: Any) -> None:
        record = {
            "severity": severity,
            "message": message,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **self._context,
            **fields,
        }
        line = redact(json.dumps(record, default=str, ensure_ascii=False))
        for secret in self._secrets:
            line = line.replace(secret, "***")
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def debug(self, message: str, **fields: Any) -> None:
        self.log("DEBUG", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("INFO", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("WARNING", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("ERROR", message, **fields)
