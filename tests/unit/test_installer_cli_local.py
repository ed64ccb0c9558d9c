"""The installer commands' checks that happen before any request: no token, an expired
token, a token of another gateway, bad arguments — each with its exit code and hint."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gateway.installer.config import save_token, token_from_response


def _token_for(directory: Path, gateway: str, exp: float, session_end: str | None = None) -> None:
    claims = {"sub": "u-1", "role": "installer", "site": "site-a", "exp": int(exp)}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    body = {"access_token": f"e30.{payload}.sig", "role": "installer"}
    if session_end is not None:
        body |= {"refresh_token": "r" * 43, "session_expires_at": session_end}
    save_token(token_from_response(gateway, "inst", body), directory)


def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
    full.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"), **env)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], env=full, capture_output=True,
        text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_not_signed_in(tmp_path: Path) -> None:
    done = _cli(tmp_path, "bed", "list")
    assert done.returncode == 4
    assert "not signed in" in done.stderr and "safehome login" in done.stderr


def test_expired_token_says_run_login(tmp_path: Path) -> None:
    _token_for(tmp_path / "xdg" / "safehome", "http://gw.example:8080", time.time() - 60)
    done = _cli(tmp_path, "device", "list")
    assert done.returncode == 4
    assert "expired" in done.stderr and "safehome login" in done.stderr


def test_token_of_another_gateway(tmp_path: Path) -> None:
    _token_for(tmp_path / "xdg" / "safehome", "http://gw.example:8080", time.time() + 600)
    done = _cli(tmp_path, "status", SAFEHOME_GATEWAY_URL="http://other.example:8080")
    assert done.returncode == 4
    assert "safehome login --gateway http://other.example:8080" in done.stderr


def test_bad_gateway_url_and_missing_password(tmp_path: Path) -> None:
    done = _cli(tmp_path, "login", "--gateway", "gw:8080", "--user", "x", "--password-stdin")
    assert done.returncode == 2 and "http(s) URL" in done.stderr
    done = _cli(tmp_path, "login", "--gateway", "http://gw.example", "--user", "x")
    assert done.returncode == 2 and "--password-stdin" in done.stderr


def test_decommission_without_a_terminal_needs_yes(tmp_path: Path) -> None:
    _token_for(tmp_path / "xdg" / "safehome", "http://gw.example:8080", time.time() + 600)
    done = _cli(tmp_path, "device", "decommission", "btn-1")
    assert done.returncode == 2 and "--yes" in done.stderr


def test_whoami_never_prints_the_token(tmp_path: Path) -> None:
    directory = tmp_path / "xdg" / "safehome"
    _token_for(directory, "http://gw.example:8080", time.time() + 600)
    done = _cli(tmp_path, "whoami", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["site"] == "site-a" and info["gateway_from"] == "login"
    token = json.loads((directory / "token.json").read_text())["access_token"]
    assert token not in done.stdout + done.stderr


def test_session_over_says_run_login_and_whoami_hides_the_refresh_token(tmp_path: Path) -> None:
    """An expired access token whose session also ended is not renewed (no request)."""
    directory = tmp_path / "xdg" / "safehome"
    _token_for(directory, "http://gw.example:8080", time.time() - 60, "2020-01-01T00:00:00+00:00")
    done = _cli(tmp_path, "device", "list")
    assert done.returncode == 4
    assert "expired" in done.stderr and "safehome login" in done.stderr
    _token_for(directory, "http://gw.example:8080", time.time() + 600, "2999-01-01T00:00:00+00:00")
    done = _cli(tmp_path, "whoami", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert "refresh_token" not in info and "r" * 43 not in done.stdout + done.stderr
    assert info["session_expires_at"].startswith("2999-01-01")
