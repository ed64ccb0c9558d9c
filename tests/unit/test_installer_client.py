"""The installer CLI's HTTP client: retry rules and the error/exit-code mapping, against a
real (tiny, local) HTTP server and a real closed port."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from gateway.installer.client import ApiClient, CliError, Exit, error_from_response


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests of each path, then 200 with the count."""

    fail = 2
    counts: dict[str, int] = {}  # noqa: RUF012 (per-test state, reset by the fixture)

    def _answer(self) -> None:
        n = self.counts[self.path] = self.counts.get(self.path, 0) + 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status = 503 if n <= self.fail else 200
        body = json.dumps({"n": n} if status == 200 else {"detail": "busy"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Flaky.counts = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_get_is_retried_through_503_patch_too(server: str) -> None:
    retries: list[str] = []
    with ApiClient(server, backoff_s=0.001, on_retry=retries.append) as api:
        assert api.get("/x") == {"n": 3}
        assert api.patch("/y", {"a": 1}) == {"n": 3}
    assert len(retries) == 4 and "HTTP 503" in retries[0]


def test_post_is_never_repeated_after_it_reached_the_gateway(server: str) -> None:
    with ApiClient(server, backoff_s=0.001) as api, pytest.raises(CliError) as exc:
        api.post("/devices/d1/decommission", {})
    assert exc.value.code is Exit.FAILED
    assert _Flaky.counts == {"/devices/d1/decommission": 1}


def test_unreachable_gateway_retries_then_exit_3() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    for method in ("GET", "POST"):
        retries: list[str] = []
        api = ApiClient(url, retries=2, backoff_s=0.001, on_retry=retries.append)
        with api, pytest.raises(CliError) as exc:
            api.send(method, "/sites")
        # A refused connection sent nothing: even a POST may be tried again.
        assert len(retries) == 2, method
        assert exc.value.code is Exit.UNREACHABLE
        assert url in exc.value.message and "SAFEHOME_GATEWAY_URL" in (exc.value.hint or "")


def _resp(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("GET", "http://gw/x"))


@pytest.mark.parametrize(
    ("status", "body", "code", "text", "hint"),
    [
        (401, {"detail": "token expired"}, Exit.AUTH, "expired", "safehome login"),
        (401, {"detail": "invalid token"}, Exit.AUTH, "did not accept", "safehome login"),
        (403, {"detail": "not allowed for this site"}, Exit.FORBIDDEN, "not allowed", "site"),
        (404, {"detail": "unknown bed code BED-9", "hint": "list beds: safehome bed list"},
         Exit.NOT_FOUND, "unknown bed code", "safehome bed list"),
        (409, {"detail": "device D-1 is already bound to bed B-2",
               "hint": "unbind it first: safehome device unbind D-1"},
         Exit.CONFLICT, "already bound", "unbind it first"),
        (422, {"detail": [{"loc": ["body", "kind"], "msg": "Input should be 'button'"}]},
         Exit.USAGE, "kind: Input should be 'button'", None),
        (500, {"detail": "boom"}, Exit.FAILED, "HTTP 500", "gateway log"),
    ],
)  # fmt: skip
def test_error_mapping(status: int, body: object, code: Exit, text: str, hint: str | None) -> None:
    err = error_from_response(_resp(status, body))
    assert err.code is code
    assert text in err.message
    assert (hint is None and err.hint is None) or (hint is not None and hint in (err.hint or ""))
    assert err.body == body


def test_wrong_password_at_sign_in() -> None:
    err = error_from_response(_resp(401, {"detail": "incorrect username or password"}),
                              signing_in=True)  # fmt: skip
    assert err.code is Exit.AUTH and err.message == "wrong user name or password"
