"""systemd units of `safehome install-service`, checked by systemd itself (systemd-analyze).

No systemd runs on the test machines, so the units are not started here: `systemd-analyze
verify` parses them as systemd would (unknown keys, bad values, missing executables) and
`systemd-analyze security --offline` scores their sandboxing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.service_units import (
    CREDENTIALS,
    GATEWAY_UNIT,
    MOSQUITTO_UNIT,
    POSTGRES_UNIT,
    STANDBY_TEMPLATE,
    UnitError,
    UnitOptions,
    render_units,
    write_units,
)

SAFEHOME = Path(sys.executable).parent / "safehome"
ANALYZE = shutil.which("systemd-analyze")


def _analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None, "systemd-analyze missing: run scripts/setup.sh (package systemd)"
    return subprocess.run(
        [ANALYZE, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def units(tmp_path: Path) -> Path:
    options = UnitOptions(executable=SAFEHOME, services="project")
    write_units(render_units(options), tmp_path)
    system = tmp_path / "system"  # the variant ordered after Debian's own units
    write_units(render_units(UnitOptions(executable=SAFEHOME)), system)
    # A template is verified through an instance of it.
    shutil.copy(tmp_path / STANDBY_TEMPLATE, tmp_path / "safehome-gateway@standby.service")
    return tmp_path


@pytest.mark.parametrize(
    "name",
    [
        GATEWAY_UNIT,
        "safehome-gateway@standby.service",
        POSTGRES_UNIT,
        MOSQUITTO_UNIT,
        f"system/{GATEWAY_UNIT}",
    ],
)
def test_systemd_accepts_every_unit_without_a_warning(units: Path, name: str) -> None:
    done = _analyze("verify", f"./{name}", cwd=units)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys are only warnings: none here


def test_verify_does_catch_a_bad_unit(units: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    text = (units / GATEWAY_UNIT).read_text().replace("WatchdogSec=", "WatchdogSecs=")
    (units / "bad.service").write_text(text)
    done = _analyze("verify", "./bad.service", cwd=units)
    assert "Unknown key 'WatchdogSecs'" in done.stderr


@pytest.mark.parametrize("name", [GATEWAY_UNIT, MOSQUITTO_UNIT])
def test_sandboxing_scores_ok(units: Path, name: str) -> None:
    """systemd's exposure score (0 = locked down, 10 = unprotected) stays at most 2.0."""
    done = _analyze("security", "--offline=yes", "--threshold=20", f"./{name}", cwd=units)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_gateway_unit_is_notify_with_watchdog_credentials_and_hardening() -> None:
    units = render_units(UnitOptions(executable=SAFEHOME, watchdog_s=45))
    gw = units[GATEWAY_UNIT]
    for line in [
        "Type=notify", "WatchdogSec=45", "NotifyAccess=main", "Restart=always",
        f"ExecStart={SAFEHOME} gateway run", "User=safehome", "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/safehome", "NoNewPrivileges=yes", "PrivateTmp=yes",
        "ProtectHome=yes", "CapabilityBoundingSet=",
        "LoadCredential=db_password:/etc/safehome/credentials/db_password",
        "Environment=SAFEHOME_DATABASE__PASSWORD_FILE=%d/db_password",
        "Environment=SAFEHOME_API__JWT_SECRET_FILE=%d/jwt_secret",
    ]:  # fmt: skip
        assert line in gw.splitlines(), line
    assert "After=network-online.target postgresql.service mosquitto.service" in gw
    assert set(units) == {GATEWAY_UNIT, STANDBY_TEMPLATE}  # system services: no extra units
    standby = units[STANDBY_TEMPLATE]
    assert "Environment=SAFEHOME_CONFIG=/etc/safehome/gateway-%i.toml" in standby
    assert "ReadWritePaths=/var/lib/safehome/%i" in standby
    # Both run behind the failover lease: enabling the second instance is safe.
    for unit in (standby, units[GATEWAY_UNIT]):
        assert "Environment=SAFEHOME_FAILOVER__ENABLED=true" in unit
    assert "StateDirectory=" not in gw  # it would chown PostgreSQL's data of project mode


@pytest.mark.parametrize(
    "options",
    [
        UnitOptions(executable=Path("safehome")),
        UnitOptions(executable=SAFEHOME, watchdog_s=1),
        UnitOptions(executable=SAFEHOME, state_dir_name="../etc"),
        UnitOptions(executable=SAFEHOME, user="root; rm"),
    ],
)
def test_bad_options_are_refused(options: UnitOptions) -> None:
    with pytest.raises(UnitError):
        render_units(options)


def test_cli_dry_run_prints_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "units"
    assert (
        main(["install-service", "--dry-run", "--target", str(target), "--exec", str(SAFEHOME)])
        == 0
    )
    out = capsys.readouterr().out
    assert f"### {GATEWAY_UNIT}" in out and "Type=notify" in out
    assert not target.exists()


def test_cli_writes_units_into_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["install-service", "--target", str(tmp_path), "--services", "project",
                 "--exec", str(SAFEHOME)])  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([GATEWAY_UNIT, STANDBY_TEMPLATE, POSTGRES_UNIT, MOSQUITTO_UNIT])
    assert (tmp_path / GATEWAY_UNIT).stat().st_mode & 0o777 == 0o644
    assert "systemctl daemon-reload" in capsys.readouterr().out
    assert main(["install-service", "--target", str(tmp_path), "--exec", "relative"]) == 2


def test_every_credential_the_units_load_is_provided_by_the_printed_and_documented_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd refuses to start a unit whose LoadCredential= file (an absolute path) is
    missing (243/CREDENTIALS): the steps must create or copy every one of them."""
    loaded = {
        line.split("=", 1)[1].split(":", 1)[0]
        for line in render_units(UnitOptions(executable=SAFEHOME))[GATEWAY_UNIT].splitlines()
        if line.startswith("LoadCredential=")
    }
    assert loaded == {c for c, _ in CREDENTIALS}
    assert main(["install-service", "--target", str(tmp_path), "--services", "project",
                 "--exec", str(SAFEHOME)]) == 0  # fmt: skip
    (copy,) = [s for s in capsys.readouterr().out.splitlines() if "/secrets/{" in s]
    assert set(copy.split("{", 1)[1].split("}", 1)[0].split(",")) == loaded
    steps = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name in loaded:
        assert f"> /etc/safehome/credentials/{name}" in steps, name
