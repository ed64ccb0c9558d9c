"""What an installer command works with (:class:`Ctx`: output, config directory, gateway
URL, checked token, API client) and the small helpers the command modules share.
"""

from __future__ import annotations

import argparse
import time
from typing import Any
from urllib.parse import quote

from gateway.installer.client import LOGIN_HINT, ApiClient, CliError, Exit
from gateway.installer.config import (
    CachedToken,
    GatewayUrl,
    config_dir,
    forget_token,
    load_token,
    resolve_gateway,
    save_token,
    token_from_response,
)
from gateway.installer.output import Output


def q(value: str) -> str:
    """A path segment (codes are safe, but never build a path from raw input)."""
    return quote(value, safe="")


class Ctx:
    """What a command works with: output, config directory, gateway URL, token, client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Output(as_json=bool(getattr(args, "json", False)))
        self.directory = config_dir()
        self._gateway: GatewayUrl | None = None
        self._client: ApiClient | None = None
        self._token: CachedToken | None = None

    @property
    def gateway(self) -> GatewayUrl:
        if self._gateway is None:
            self._gateway = resolve_gateway(getattr(self.args, "gateway", None))
        return self._gateway

    @property
    def token(self) -> CachedToken:
        """The cached token, checked: present, unexpired and issued by this gateway."""
        if self._token is None:
            token = load_token(self.directory)
            if token is None:
                raise CliError("you are not signed in", LOGIN_HINT, Exit.AUTH)
            if token.gateway != self.gateway.url:
                raise CliError(
                    f"you are signed in to {token.gateway}, not {self.gateway.url}",
                    f"run: safehome login --gateway {self.gateway.url}",
                    Exit.AUTH,
                )
            self._token = token
            if token.expired():
                self._token = self._refreshed(token)
        return self._token

    def _refreshed(self, token: CachedToken) -> CachedToken:
        """A new access token for the session (refresh token rotated, cache rewritten);
        :class:`CliError` when the session is over."""
        expired = CliError(
            f"your sign-in expired at {local_time(token.expires_at)}", LOGIN_HINT, Exit.AUTH
        )
        if not token.renewable() or token.refresh_token is None:
            raise expired
        with ApiClient(self.gateway.url, on_retry=lambda m: self.out.err.print(f"… {m}")) as c:
            try:
                answer = c.refresh(token.refresh_token)
            except CliError as exc:
                if exc.code is Exit.AUTH:
                    forget_token(self.directory)  # spent or revoked: useless from now on
                    raise expired from None
                raise
        fresh = token_from_response(token.gateway, token.username, answer)
        save_token(fresh, self.directory)
        return fresh

    def _refresh_now(self) -> str | None:
        """The ApiClient's hook on a 401: renew once; None when the session is over."""
        if self._token is None:
            return None
        try:
            self._token = self._refreshed(self._token)
        except CliError:
            return None
        return self._token.access_token

    @property
    def api(self) -> ApiClient:
        """An authenticated client of the gateway (renews its token on the way)."""
        if self._client is None:
            self._client = ApiClient(
                self.gateway.url, self.token, on_retry=lambda m: self.out.err.print(f"… {m}"),
                refresher=self._refresh_now,
            )  # fmt: skip
        return self._client

    def site(self) -> str:
        """``--site``, else the site of the signed-in installer."""
        site = getattr(self.args, "site", None) or self.token.site
        if not site:
            raise CliError(
                "which site? your account is not tied to one", "add --site SITE", Exit.USAGE
            )
        return str(site)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def local_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def fields(**values: Any) -> dict[str, Any]:
    """The values that were given (for PATCH bodies)."""
    body = {k: v for k, v in values.items() if v is not None}
    if not body:
        raise CliError("nothing to change", "give at least one option (see --help)", Exit.USAGE)
    return body
