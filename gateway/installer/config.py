"""Where the installer CLI keeps its state: the gateway URL and the cached sign-in token.

Everything lives in one directory, ``$XDG_CONFIG_HOME/safehome`` (``~/.config/safehome``
when the variable is unset), created with mode 0700:

- ``config.json`` — ``{"gateway": URL}``, written by ``safehome login --gateway URL``;
- ``token.json`` — the bearer token, its expiry, the session's refresh token and who it
  belongs to, mode 0600. An expired access token is renewed with the refresh token
  (``POST /auth/refresh``, which rotates it) without asking for the password again, until
  the session ends (installers: ``api.installer_session_max_s``, 4 h by default).

Both are written atomically (a temporary file in the same directory, ``fsync``, then
``os.replace``), so a crash or a full disk never leaves half a token behind, and the file
never exists with wider permissions even for an instant.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_GATEWAY = "SAFEHOME_GATEWAY_URL"
DEFAULT_GATEWAY = "http://127.0.0.1:8080"
DIR_MODE = 0o700
FILE_MODE = 0o600


class ConfigError(Exception):
    """Bad local configuration (unusable URL, unreadable or unsafe files)."""


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/safehome``, else ``$HOME/.config/safehome``."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CONFIG_HOME", "").strip()
    # The XDG spec: a relative path is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else None
    if base is None:
        home = env.get("HOME", "").strip()
        base = (Path(home) if home else Path.home()) / ".config"
    return base / "safehome"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) or tighten an existing one to 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (its directory made 0700)."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp already uses 0600; never rely on the umask
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON; delete it and run safehome login") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; delete it and run safehome login")
    return data


def normalise_url(url: str) -> str:
    """``url`` without trailing slashes; :class:`ConfigError` unless it is http(s)://host."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"gateway URL {url!r} is not an http(s) URL, e.g. http://192.168.1.10:8080"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"gateway URL {url!r} must not carry a query or fragment")
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class GatewayUrl:
    """The resolved gateway URL and where it came from (shown by ``whoami``)."""

    url: str
    source: str  # "--gateway", the env variable, "config file", "login" or "default"


def resolve_gateway(
    flag: str | None, environ: Mapping[str, str] | None = None, directory: Path | None = None
) -> GatewayUrl:
    """The gateway URL: ``--gateway``, else ``$SAFEHOME_GATEWAY_URL``, else ``config.json``,
    else the URL the cached token was issued by, else :data:`DEFAULT_GATEWAY`."""
    env = os.environ if environ is None else environ
    directory = directory or config_dir(env)
    if flag:
        return GatewayUrl(normalise_url(flag), "--gateway")
    if env.get(ENV_GATEWAY, "").strip():
        return GatewayUrl(normalise_url(env[ENV_GATEWAY]), ENV_GATEWAY)
    cfg = _read_json(directory / "config.json")
    if cfg and isinstance(cfg.get("gateway"), str):
        return GatewayUrl(normalise_url(cfg["gateway"]), "config file")
    token = load_token(directory)
    if token is not None:
        return GatewayUrl(token.gateway, "login")
    return GatewayUrl(DEFAULT_GATEWAY, "default")


def save_gateway(url: str, directory: Path) -> None:
    """Remember ``url`` in ``config.json`` (other keys kept)."""
    path = directory / "config.json"
    cfg = _read_json(path) or {}
    cfg["gateway"] = normalise_url(url)
    write_private(path, json.dumps(cfg, indent=2) + "\n")


# -- the token cache ---------------------------------------------------------------------


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without verifying it (only the gateway can verify it; the
    CLI reads them to show who is signed in and when the sign-in expires)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError) as exc:
        raise ConfigError("the cached token is not a JWT; run safehome login") from exc
    if not isinstance(claims, dict):
        raise ConfigError("the cached token is not a JWT; run safehome login")
    return claims


@dataclass(frozen=True, slots=True)
class CachedToken:
    """A bearer token with what the CLI needs to know about it."""

    gateway: str
    access_token: str
    username: str
    role: str
    user_id: str
    site: str | None
    expires_at: float  # unix seconds
    # The session's refresh token (rotated on every use) and when the session ends at the
    # latest; None in caches written before the gateway issued refresh tokens.
    refresh_token: str | None = None
    session_expires_at: float | None = None

    def expired(self, now: float | None = None) -> bool:
        """Whether the token is past its expiry (with 5 s slack for clock and latency)."""
        return (time.time() if now is None else now) >= self.expires_at - 5

    def renewable(self, now: float | None = None) -> bool:
        """Whether the session may still give a new access token (refresh)."""
        if self.refresh_token is None:
            return False
        end = self.session_expires_at
        return end is None or (time.time() if now is None else now) < end - 5

    def public(self) -> dict[str, Any]:
        """Everything but the tokens themselves (for ``whoami``)."""
        out = asdict(self)
        del out["access_token"], out["refresh_token"]
        return out


def token_from_response(gateway: str, username: str, body: Mapping[str, Any]) -> CachedToken:
    """A :class:`CachedToken` from a ``POST /auth/token`` answer."""
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise ConfigError("the gateway's sign-in answer has no access_token")
    claims = jwt_claims(access)
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        exp = time.time() + float(body.get("expires_in", 0))
    site = claims.get("site")
    refresh = body.get("refresh_token")
    session_end: float | None = None
    if isinstance(body.get("session_expires_at"), str):
        try:
            session_end = datetime.fromisoformat(body["session_expires_at"]).timestamp()
        except ValueError:
            session_end = None
    return CachedToken(
        gateway=normalise_url(gateway),
        access_token=access,
        username=username,
        role=str(body.get("role") or claims.get("role") or ""),
        user_id=str(claims.get("sub", "")),
        site=str(site) if site is not None else None,
        expires_at=float(exp),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        session_expires_at=session_end,
    )


def save_token(token: CachedToken, directory: Path) -> Path:
    """Cache ``token`` in ``token.json`` (0600, atomic)."""
    path = directory / "token.json"
    write_private(path, json.dumps(asdict(token), indent=2) + "\n")
    return path


def load_token(directory: Path) -> CachedToken | None:
    """The cached token, or None. Refuses a token file others can read."""
    path = directory / "token.json"
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise ConfigError(
            f"{path} is readable by other users (mode {mode:o}); delete it and run safehome login"
        )
    data = _read_json(path)
    if data is None:
        return None
    try:
        return CachedToken(
            gateway=str(data["gateway"]),
            access_token=str(data["access_token"]),
            username=str(data["username"]),
            role=str(data["role"]),
            user_id=str(data["user_id"]),
            site=None if data.get("site") is None else str(data["site"]),
            expires_at=float(data["expires_at"]),
            refresh_token=None if data.get("refresh_token") is None else str(data["refresh_token"]),
            session_expires_at=(
                None if data.get("session_expires_at") is None
                else float(data["session_expires_at"])
            ),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path} is incomplete; run safehome login") from None


def forget_token(directory: Path) -> bool:
    """Delete the cached token; whether there was one."""
    path = directory / "token.json"
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
