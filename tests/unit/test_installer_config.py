"""Installer CLI state: token cache permissions and atomicity, gateway URL resolution."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import pytest

from gateway.installer.config import (
    DEFAULT_GATEWAY,
    ENV_GATEWAY,
    CachedToken,
    ConfigError,
    config_dir,
    forget_token,
    jwt_claims,
    load_token,
    normalise_url,
    resolve_gateway,
    save_gateway,
    save_token,
    token_from_response,
    write_private,
)


def _jwt(claims: dict[str, object]) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.signature"


def _token(gateway: str = "http://gw:8080", exp: float | None = None) -> CachedToken:
    access = _jwt({"sub": "u-1", "role": "installer", "site": "site-a",
                   "exp": int(exp if exp is not None else time.time() + 3600)})  # fmt: skip
    return token_from_response(gateway, "inst", {"access_token": access, "role": "installer"})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_dir_follows_xdg_then_home(tmp_path: Path) -> None:
    assert config_dir({"XDG_CONFIG_HOME": str(tmp_path / "x"), "HOME": "/h"}) == (
        tmp_path / "x" / "safehome"
    )
    assert config_dir({"HOME": str(tmp_path)}) == tmp_path / ".config" / "safehome"
    # A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
    assert config_dir({"XDG_CONFIG_HOME": "rel", "HOME": str(tmp_path)}) == (
        tmp_path / ".config" / "safehome"
    )


def test_token_file_is_0600_in_a_0700_directory_even_with_a_lax_umask(tmp_path: Path) -> None:
    directory = tmp_path / "cfg" / "safehome"
    old = os.umask(0)
    try:
        path = save_token(_token(), directory)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert _mode(directory) == 0o700
    assert [p.name for p in directory.iterdir()] == ["token.json"]  # no temporary left over
    loaded = load_token(directory)
    assert loaded == CachedToken(**json.loads(path.read_text()))
    assert loaded is not None and loaded.site == "site-a" and loaded.role == "installer"


def test_an_existing_lax_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "safehome"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    save_token(_token(), directory)
    assert _mode(directory) == 0o700


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = save_token(_token(), tmp_path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        load_token(tmp_path)


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.json"
    write_private(target, "one")
    write_private(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]


def test_forget_token(tmp_path: Path) -> None:
    assert forget_token(tmp_path) is False
    save_token(_token(), tmp_path)
    assert forget_token(tmp_path) is True
    assert load_token(tmp_path) is None


def test_expiry_is_read_from_the_jwt() -> None:
    now = time.time()
    assert not _token(exp=now + 600).expired(now)
    assert _token(exp=now + 3).expired(now)  # within the 5 s slack
    assert _token(exp=now - 1).expired(now)
    claims = jwt_claims(_token().access_token)
    assert claims["sub"] == "u-1"
    with pytest.raises(ConfigError):
        jwt_claims("not-a-jwt")


def test_whoami_view_never_contains_the_token() -> None:
    token = _token()
    assert token.access_token not in json.dumps(token.public())


def test_url_resolution_order(tmp_path: Path) -> None:
    env = {ENV_GATEWAY: "http://env:1/"}
    assert resolve_gateway("https://flag:2/", env, tmp_path).url == "https://flag:2"
    got = resolve_gateway(None, env, tmp_path)
    assert (got.url, got.source) == ("http://env:1", ENV_GATEWAY)
    assert resolve_gateway(None, {}, tmp_path).url == DEFAULT_GATEWAY
    save_token(_token("http://from-login:3"), tmp_path)
    assert resolve_gateway(None, {}, tmp_path).source == "login"
    save_gateway("http://file:4", tmp_path)
    got = resolve_gateway(None, {}, tmp_path)
    assert (got.url, got.source) == ("http://file:4", "config file")
    assert _mode(tmp_path / "config.json") == 0o600
    assert resolve_gateway(None, env, tmp_path).url == "http://env:1"  # env beats the file


@pytest.mark.parametrize("bad", ["gw:8080", "ftp://gw", "http://", "http://gw/?x=1", ""])
def test_bad_urls_are_refused_with_an_example(bad: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        normalise_url(bad)


def test_a_corrupt_config_file_names_the_fix(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="safehome login"):
        resolve_gateway(None, {}, tmp_path)
