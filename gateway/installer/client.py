"""The installer CLI's HTTP client of the gateway API (``docs/installer-api.md``).

Built for a flaky phone hotspot:

- timeouts on every phase (connect 5 s, read 30 s by default);
- idempotent requests (GET, PATCH of fields) are retried with backoff on transport errors
  and on 502/503/504;
- a POST is retried only when the connection could not even be opened (nothing was sent, so
  nothing can have happened twice); any later failure of a POST is reported, never repeated:
  the user is told to check with ``show`` before trying again.

Every failure becomes a :class:`CliError` carrying a message, a hint (what to do next) and
the process exit code (:class:`Exit`). Nothing here logs request bodies, names or tokens.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from gateway.installer.config import CachedToken
from gateway.installer.exits import Exit

__all__ = ["LOGIN_HINT", "ApiClient", "CliError", "Exit", "error_from_response", "unreachable"]


class CliError(Exception):
    """A failure shown to the user as ``error: message`` and ``hint: hint``."""

    def __init__(
        self, message: str, hint: str | None = None, code: Exit = Exit.FAILED, body: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code
        self.body = body  # the gateway's JSON answer, when there was one


DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
RETRY_STATUS = frozenset({502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PATCH", "PUT", "DELETE"})
LOGIN_HINT = "run: safehome login"


def _validation_message(detail: Any) -> str:
    """FastAPI's 422 detail list as one readable line."""
    if not isinstance(detail, list):
        return str(detail)
    parts = []
    for item in detail:
        if not isinstance(item, dict):
            parts.append(str(item))
            continue
        loc = [str(x) for x in item.get("loc", []) if x not in ("body", "query", "path")]
        where = ".".join(loc)
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


def error_from_response(resp: httpx.Response, *, signing_in: bool = False) -> CliError:
    """The :class:`CliError` for a 4xx/5xx answer of the gateway."""
    err = _error(resp, signing_in=signing_in)
    try:
        err.body = resp.json()
    except ValueError:
        err.body = None
    return err


def _error(resp: httpx.Response, *, signing_in: bool) -> CliError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    detail: Any = body.get("detail") if isinstance(body, dict) else None
    hint = body.get("hint") if isinstance(body, dict) else None
    hint = hint if isinstance(hint, str) and hint else None
    status = resp.status_code
    if status == 401:
        if signing_in:
            return CliError(
                "wrong user name or password",
                "check both (the password is case-sensitive); an administrator can reset it",
                Exit.AUTH,
            )
        if isinstance(detail, str) and "expired" in detail:
            return CliError("your sign-in has expired", LOGIN_HINT, Exit.AUTH)
        return CliError("the gateway did not accept your sign-in", LOGIN_HINT, Exit.AUTH)
    if status == 403:
        return CliError(
            str(detail or "not allowed"),
            hint or "installers act on their own site only; check --site or ask an admin",
            Exit.FORBIDDEN,
        )
    if status == 404:
        return CliError(str(detail or "not found"), hint, Exit.NOT_FOUND)
    if status == 409:
        return CliError(str(detail or "conflict"), hint, Exit.CONFLICT)
    if status == 422:
        return CliError(_validation_message(detail), hint, Exit.USAGE)
    if status >= 500:
        return CliError(
            f"the gateway failed (HTTP {status})",
            "try again in a minute; if it persists, the operator should check the gateway log",
            Exit.FAILED,
        )
    return CliError(str(detail or f"HTTP {status}"), hint, Exit.FAILED)


def unreachable(url: str, exc: Exception) -> CliError:
    """The :class:`CliError` for a gateway that cannot be reached."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return CliError(
        f"gateway {kind} at {url}",
        "check the network (hotspot, Wi-Fi) and the address: safehome login --gateway URL, "
        "or set SAFEHOME_GATEWAY_URL",
        Exit.UNREACHABLE,
    )


class ApiClient:
    """A small synchronous client of the gateway API with retries and clear errors."""

    def __init__(
        self,
        base_url: str,
        token: CachedToken | None = None,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 4,
        backoff_s: float = 0.5,
        on_retry: Callable[[str], None] | None = None,
        refresher: Callable[[], str | None] | None = None,
    ) -> None:
        self.base_url = base_url
        self.token = token
        self.retries = retries
        self.backoff_s = backoff_s
        self.on_retry = on_retry
        # Called once on a 401 during a request: a new access token (the request is then
        # sent again: a 401 means the gateway did nothing), or None to give up.
        self.refresher = refresher
        headers = {"User-Agent": "safehome-installer/1"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.access_token}"
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------

    def _sleep(self, attempt: int, why: str) -> None:
        delay = min(8.0, self.backoff_s * 2**attempt) * (0.75 + random.random() / 2)
        if self.on_retry is not None:
            self.on_retry(f"{why}; retrying in {delay:.1f}s ({attempt + 1}/{self.retries})")
        time.sleep(delay)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        signing_in: bool = False,
    ) -> httpx.Response:
        """Send one request; retry as the module docstring says; raise :class:`CliError`
        on a transport failure or a 4xx/5xx answer."""
        method = method.upper()
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        idempotent = method in IDEMPOTENT
        attempt = 0
        refreshed = signing_in or self.refresher is None
        while True:
            try:
                resp = self._http.request(
                    method, path, params=clean, json=json, content=content, data=data,
                    headers=headers,
                )  # fmt: skip
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing was sent: safe to try again, whatever the method.
                # (A streamed body cannot be sent twice.)
                if attempt >= self.retries or not (content is None or isinstance(content, bytes)):
                    raise unreachable(self.base_url, exc) from None
                self._sleep(attempt, "gateway unreachable")
            except httpx.TransportError as exc:
                if not idempotent or attempt >= self.retries:
                    err = unreachable(self.base_url, exc)
                    if not idempotent:
                        err.message = f"connection lost during {method} {path}: the gateway may "
                        err.message += "or may not have done it"
                        err.hint = "check with the matching `show` command before trying again"
                    raise err from None
                self._sleep(attempt, "connection lost")
            else:
                replayable = content is None or isinstance(content, bytes)
                if resp.status_code == 401 and not refreshed and replayable and self._renew():
                    refreshed = True
                    continue  # refused before anything happened: safe to send again
                if resp.status_code in RETRY_STATUS and idempotent and attempt < self.retries:
                    self._sleep(attempt, f"gateway busy (HTTP {resp.status_code})")
                elif resp.status_code >= 400:
                    raise error_from_response(resp, signing_in=signing_in)
                else:
                    return resp
            attempt += 1

    def _renew(self) -> bool:
        assert self.refresher is not None
        access = self.refresher()
        if access is None:
            return False
        self._http.headers["Authorization"] = f"Bearer {access}"
        return True

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` and return its JSON."""
        return self.send("GET", path, params=params).json()

    def get_bytes(self, path: str, **params: Any) -> bytes:
        """GET ``path`` and return its body (CSV, PDF)."""
        return self.send("GET", path, params=params).content

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """POST JSON ``body`` to ``path`` and return the JSON answer (None when empty)."""
        resp = self.send("POST", path, params=params, json=body)
        return resp.json() if resp.content else None

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        """PATCH ``path`` with the given fields and return the JSON answer."""
        return self.send("PATCH", path, json=dict(body)).json()

    def sign_in(self, username: str, password: str) -> Any:
        """``POST /auth/token`` (OAuth2 password form) and return the JSON answer."""
        resp = self.send(
            "POST", "/auth/token", data={"username": username, "password": password},
            signing_in=True,
        )  # fmt: skip
        return resp.json()

    def refresh(self, refresh_token: str) -> Any:
        """``POST /auth/refresh``: a new token pair (the presented refresh token is spent)."""
        resp = self.send("POST", "/auth/refresh", json={"refresh_token": refresh_token})
        return resp.json()
