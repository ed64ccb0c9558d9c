"""A small receiving endpoint of the platform push, for the demo and the tests.

``safehome platform receiver --port N --secret-file F --dir D`` runs a real HTTP server
(``http.server``): a ``POST`` whose signature checks out (:func:`gateway.platform.signing.
verify`, timestamps within ``max_skew_s``) and whose idempotency key matches the document's
is stored once as ``D/<key>.json`` (the exact bytes received); a repeated key answers
``200 {"status": "duplicate"}`` and stores nothing. A bad or missing signature answers 401,
a malformed document 400. Every request is appended to ``D/receipts.jsonl`` (key, delivery,
result, time: no document content).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway.platform.signing import (
    DELIVERY_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)

MAX_BODY = 8 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def stored_name(key: str) -> str:
    """The file name of the document with idempotency key ``key``."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{_UNSAFE.sub('_', key)[:100]}-{digest}.json"


class PlatformReceiver:
    """The receiving server; :meth:`start` serves on a thread, :meth:`stop` ends it."""

    def __init__(
        self,
        secret: bytes,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_skew_s: float = 300.0,
        on_stored: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.secret = secret
        self.directory = directory
        self.max_skew_s = max_skew_s
        self.on_stored = on_stored  # called with (key, file) for each new document
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/push") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> PlatformReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="platform-receiver"
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def stored(self) -> list[Path]:
        """The documents stored so far (one per idempotency key)."""
        return sorted(p for p in self.directory.glob("*.json"))

    def receipts(self) -> list[dict[str, Any]]:
        path = self.directory / "receipts.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Check and store one request; (status, answer)."""
        key = headers.get(IDEMPOTENCY_HEADER.lower())
        problem = verify(
            self.secret,
            headers.get(TIMESTAMP_HEADER.lower()),
            body,
            headers.get(SIGNATURE_HEADER.lower()),
            now=time.time(),
            max_skew_s=self.max_skew_s,
        )
        if problem is not None:
            return self._receipt(key, headers, 401, {"error": problem})
        try:
            document = json.loads(body)
        except ValueError:
            return self._receipt(key, headers, 400, {"error": "not JSON"})
        if not key or not isinstance(document, dict) or document.get("idempotency_key") != key:
            return self._receipt(key, headers, 400, {"error": "idempotency key mismatch"})
        target = self.directory / stored_name(key)
        with self._lock:
            duplicate = target.exists()
            if not duplicate:
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(body)
                os.replace(tmp, target)
        status = "duplicate" if duplicate else "stored"
        if not duplicate and self.on_stored is not None:
            self.on_stored(key, target)
        return self._receipt(key, headers, 200, {"status": status, "key": key})

    def _receipt(
        self, key: str | None, headers: dict[str, str], status: int, answer: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        line = {
            "key": key,
            "delivery": headers.get(DELIVERY_HEADER.lower()),
            "status": status,
            "result": answer.get("status", answer.get("error")),
            "at": round(time.time(), 3),
        }
        with self._lock, (self.directory / "receipts.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        return status, answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"error": "too large"})
                    return
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._answer(*receiver.handle(headers, body))

            def _answer(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # receipts.jsonl is the log

        return Handler
