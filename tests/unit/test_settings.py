"""Settings: TOML layers, environment overrides, secrets from files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings


def test_defaults_come_from_the_shipped_toml() -> None:
    s = load_settings(environ={})
    assert s.mqtt.prefix == "shg"
    assert s.ingest.batch_size == 5000
    assert s.database.password is None


def test_environment_overrides_toml_and_overlay(tmp_path: Path) -> None:
    overlay = tmp_path / "site.toml"
    overlay.write_text('[mqtt]\nport = 2883\nprefix = "zj"\n')
    s = load_settings(overlay, environ={"SAFEHOME_MQTT__PORT": "3883"})
    assert (s.mqtt.port, s.mqtt.prefix) == (3883, "zj")


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = load_settings(environ={"SAFEHOME_DATABASE__PASSWORD_FILE": str(secret)})
    assert s.database.password is not None
    assert s.database.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_secret_in_toml_is_refused(tmp_path: Path) -> None:
    overlay = tmp_path / "bad.toml"
    overlay.write_text('[mqtt]\npassword = "hunter2"\n')
    with pytest.raises(SettingsError, match=r"mqtt\.password is a secret"):
        load_settings(overlay, environ={})


def test_every_bad_key_is_named() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"SAFEHOME_MQTT__PORT": "x", "SAFEHOME_INGEST__BATCH_SIZE": "0"})
    text = str(err.value)
    assert "mqtt.port" in text and "ingest.batch_size" in text


def test_unknown_key_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"ingest\.batchsize"):
        load_settings(environ={"SAFEHOME_INGEST__BATCHSIZE": "10"})
