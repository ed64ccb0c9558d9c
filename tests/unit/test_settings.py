"""Settings: TOML layers, environment overrides, secrets from files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from gateway.settings import SECRET_PATHS, SettingsError, load_settings, secret_paths


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


def _refusal(tmp_path: Path, text: str) -> str:
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_settings(overlay, environ={})
    return str(err.value)


def test_nested_secrets_in_toml_are_refused_naming_key_and_variables(tmp_path: Path) -> None:
    smtp = _refusal(tmp_path, '[notify.smtp]\nhost = "mail"\npassword = "hunter2"\n')
    assert "notify.smtp.password is a secret" in smtp
    assert "SAFEHOME_NOTIFY__SMTP__PASSWORD or SAFEHOME_NOTIFY__SMTP__PASSWORD_FILE" in smtp
    assert "hunter2" not in smtp
    sms = _refusal(
        tmp_path,
        '[notify.sms]\naccess_key_id = "id"\naccess_key_secret = "k"\nsign_name = "s"\n'
        'template_code = "SMS_1"\n',
    )
    assert "notify.sms.access_key_secret is a secret" in sms
    assert "SAFEHOME_NOTIFY__SMS__ACCESS_KEY_SECRET_FILE" in sms
    # Inline tables are the same keys; every secret of the file is named at once.
    both = _refusal(
        tmp_path,
        '[notify]\nwebhooks = { webhook = { url = "https://h/x", secret = "s" } }\n'
        'bots = { wecom = "wecombot://key" }\n[api]\njwt_secret = "x"\n',
    )
    for key in (
        "api.jwt_secret",
        "notify.bots.wecom",
        "notify.webhooks.webhook.secret",
        "notify.webhooks.webhook.url",
    ):
        assert f"{key} is a secret" in both


def test_every_secretstr_field_at_any_depth_is_refused_in_toml(tmp_path: Path) -> None:
    # Derived from the models, not a hand-kept list: a new SecretStr field is covered too.
    assert {
        ("database", "password"),
        ("mqtt", "password"),
        ("api", "jwt_secret"),
        ("audit", "anchor_key"),
        ("notify", "smtp", "password"),
        ("notify", "sms", "access_key_secret"),
        ("notify", "webhooks", "*", "url"),
        ("notify", "bots", "*"),
    } <= SECRET_PATHS
    for path in SECRET_PATHS:
        concrete = [("x" if part == "*" else part) for part in path]
        text = f'[{".".join(concrete[:-1])}]\n{concrete[-1]} = "value"\n'
        assert f"{'.'.join(concrete)} is a secret" in _refusal(tmp_path, text), path


def test_secret_paths_follow_optionals_dicts_lists_and_nesting() -> None:
    class Inner(BaseModel):
        token: SecretStr
        plain: str = ""

    class Outer(BaseModel):
        key: SecretStr | None = None
        inner: Inner | None = None
        by_name: dict[str, Inner] = {}
        keys: list[SecretStr] = []
        name: str = ""

    assert secret_paths(Outer) == {
        ("key",),
        ("inner", "token"),
        ("by_name", "*", "token"),
        ("keys",),
    }


def test_nested_secrets_come_from_environment_or_files(tmp_path: Path) -> None:
    overlay = tmp_path / "notify.toml"
    overlay.write_text(
        '[notify.smtp]\nhost = "mail.example"\nusername = "gw"\n'
        '[notify.sms]\naccess_key_id = "id"\nsign_name = "s"\ntemplate_code = "SMS_1"\n'
    )
    secret = tmp_path / "sms"
    secret.write_text("sms-key\n")
    s = load_settings(
        overlay,
        environ={
            "SAFEHOME_NOTIFY__SMTP__PASSWORD": "mail-pw",
            "SAFEHOME_NOTIFY__SMS__ACCESS_KEY_SECRET_FILE": str(secret),
        },
    )
    assert s.notify.smtp is not None and s.notify.smtp.host == "mail.example"
    assert s.notify.smtp.password is not None
    assert s.notify.smtp.password.get_secret_value() == "mail-pw"
    assert s.notify.sms is not None
    assert s.notify.sms.access_key_secret.get_secret_value() == "sms-key"


def test_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SettingsError, match=r"SAFEHOME_NOTIFY__SMTP__PASSWORD_FILE: cannot read"):
        load_settings(environ={"SAFEHOME_NOTIFY__SMTP__PASSWORD_FILE": str(missing)})


def test_file_variable_of_a_non_secret_key_is_an_ordinary_setting(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    s = load_settings(environ={"SAFEHOME_MQTT__CA_FILE": str(ca)})
    assert s.mqtt.ca_file == ca  # a path setting, not a file to read


def test_owner_role_is_used_for_migrations_only() -> None:
    s = load_settings(
        environ={
            "SAFEHOME_DATABASE__PASSWORD": "app-pw",
            "SAFEHOME_DATABASE__OWNER_USER": "safehome_owner",
            "SAFEHOME_DATABASE__OWNER_PASSWORD": "owner-pw",
        }
    )
    d = s.database
    assert "user='safehome'" in d.conninfo() and "app-pw" in d.conninfo()
    assert "owner-pw" not in d.conninfo()
    assert "user='safehome_owner'" in d.owner_conninfo() and "owner-pw" in d.owner_conninfo()
    assert d.app_role == "safehome"
    single = load_settings(environ={"SAFEHOME_DATABASE__PASSWORD": "app-pw"}).database
    assert single.app_role is None and single.owner_conninfo() == single.conninfo()
