"""systemd units of a deployment (``safehome install-service``): pure text, written at the edge.

Units:

* ``safehome-gateway.service``: the gateway, ``Type=notify`` with a watchdog (the gateway
  sends ``READY=1``, ``WATCHDOG=1`` while its workers are healthy and ``STOPPING=1``, see
  gateway.sdnotify), restarted on failure, hardened (dedicated user, read-only system, no
  capabilities, syscall filter), secrets passed as systemd credentials (``LoadCredential=``)
  and read through the settings' ``*_FILE`` variables.
* ``safehome-gateway@.service``: the same for a second instance (``safehome-gateway@standby``),
  with its own overlay ``/etc/safehome/gateway-<instance>.toml`` and state directory. Both
  units run with the failover lease on (``SAFEHOME_FAILOVER__ENABLED=true``, gateway.lease):
  whichever holds it is active, the other waits as the standby, so enabling the second
  instance can never make two gateways take the MQTT session from each other. A fenced
  active exits (75) and ``Restart=always`` brings it back as the standby.
* With ``services="project"``: ``safehome-postgresql.service`` and
  ``safehome-mosquitto.service`` run the project's own PostgreSQL + TimescaleDB and Mosquitto
  from the directories ``safehome services up`` prepared under the state directory (the
  broker runs as the gateway's user so that the gateway may rewrite its accounts and send it
  SIGHUP without any capability). With ``services="system"`` the gateway is ordered after
  Debian's ``postgresql.service`` and ``mosquitto.service`` instead.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.localsvc_admin import SECRET_FILES

GATEWAY_UNIT = "safehome-gateway.service"
STANDBY_TEMPLATE = "safehome-gateway@.service"
POSTGRES_UNIT = "safehome-postgresql.service"
MOSQUITTO_UNIT = "safehome-mosquitto.service"

# (credential name, settings variable read from the file systemd exposes under %d): the same
# names as the secrets `safehome services up` creates under <var_dir>/secrets.
CREDENTIALS: tuple[tuple[str, str], ...] = tuple((name, var) for var, name in SECRET_FILES.items())

# Sandboxing shared by every unit we write (each line documented in docs/operations.md).
_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0027"""


class UnitError(ValueError):
    """Options that cannot make a valid unit."""


@dataclass(frozen=True, slots=True)
class UnitOptions:
    """What the units point at. Paths must be absolute (systemd requires it)."""

    executable: Path  # the `safehome` entry point of the installed virtualenv
    config_dir: Path = Path("/etc/safehome")
    state_dir_name: str = "safehome"  # under /var/lib (StateDirectory=)
    user: str = "safehome"
    services: Literal["system", "project"] = "system"
    watchdog_s: int = 30
    pg_bindir: Path = Path("/usr/lib/postgresql/15/bin")
    mosquitto: Path = Path("/usr/sbin/mosquitto")

    def check(self) -> None:
        for name in ("executable", "config_dir", "pg_bindir", "mosquitto"):
            if not getattr(self, name).is_absolute():
                raise UnitError(f"{name} must be an absolute path: {getattr(self, name)}")
        if self.state_dir_name in ("", ".", "..") or "/" in self.state_dir_name:
            raise UnitError("state_dir_name must be a directory name under /var/lib")
        if not 5 <= self.watchdog_s <= 600:
            raise UnitError("watchdog_s must be between 5 and 600 seconds")
        if not self.user.isidentifier() and not self.user.replace("-", "_").isidentifier():
            raise UnitError(f"not a user name: {self.user!r}")

    @property
    def state_dir(self) -> Path:
        return Path("/var/lib") / self.state_dir_name


def _dependencies(o: UnitOptions) -> str:
    if o.services == "project":
        deps = f"{POSTGRES_UNIT} {MOSQUITTO_UNIT}"
        return f"Wants={deps}\nAfter=network-online.target {deps}\nWants=network-online.target"
    # Debian's own units; Wants= (not Requires=): the gateway waits out an outage itself.
    deps = "postgresql.service mosquitto.service"
    return f"Wants=network-online.target\nAfter=network-online.target {deps}"


def _gateway(o: UnitOptions, *, instance: bool) -> str:
    name = "%i" if instance else ""
    overlay = o.config_dir / ("gateway-%i.toml" if instance else "gateway.toml")
    creds_dir = o.config_dir / "credentials" / ("%i" if instance else "")
    # Not StateDirectory=: systemd would chown it recursively, and with the project's own
    # services it holds PostgreSQL's data (owned by postgres). The operator creates it.
    var_dir = o.state_dir / "%i" if instance else o.state_dir
    credentials = "\n".join(f"LoadCredential={c}:{creds_dir / c}" for c, _ in CREDENTIALS)
    secret_env = "\n".join(f"Environment={var}=%d/{c}" for c, var in CREDENTIALS)
    title = f"Safe-Home Guardian gateway ({name})" if instance else "Safe-Home Guardian gateway"
    return f"""\
# Generated by `safehome install-service`; regenerate rather than edit (docs/operations.md).
[Unit]
Description={title}
{_dependencies(o)}
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=notify
NotifyAccess=main
WatchdogSec={o.watchdog_s}
TimeoutStartSec=300
TimeoutStopSec=60
Restart=always
RestartSec=2
ExecStart={o.executable} gateway run
User={o.user}
Group={o.user}
WorkingDirectory={var_dir}
ReadWritePaths={var_dir}
Environment=SAFEHOME_CONFIG={overlay}
Environment=SAFEHOME_VAR_DIR={var_dir}
# Always behind the lease (gateway.lease): one active, any other instance the standby.
Environment=SAFEHOME_FAILOVER__ENABLED=true
Environment=PYTHONUNBUFFERED=1
# Secrets: systemd credentials (root-only files, exposed read-only to this service),
# read through the settings' *_FILE variables. More (SMTP, SMS) go in a drop-in the same way.
{credentials}
{secret_env}
LimitNOFILE=65536
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
{_HARDENING}

[Install]
WantedBy=multi-user.target
"""


def _postgres(o: UnitOptions) -> str:
    data = o.state_dir / "pg"
    return f"""\
# Generated by `safehome install-service`: the project's PostgreSQL + TimescaleDB cluster,
# initialised by `safehome services up` (gateway.localsvc.PostgresServer).
[Unit]
Description=Safe-Home Guardian PostgreSQL + TimescaleDB
After=network.target
ConditionPathExists={data}/PG_VERSION

[Service]
Type=notify
User=postgres
Group=postgres
ExecStart={o.pg_bindir / "postgres"} -D {data}
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
KillSignal=SIGINT
TimeoutSec=infinity
Restart=on-failure
ReadWritePaths={data}
RuntimeDirectory=safehome-pg
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
{_HARDENING}

[Install]
WantedBy=multi-user.target
"""


def _mosquitto(o: UnitOptions) -> str:
    directory = o.state_dir / "mqtt"
    return f"""\
# Generated by `safehome install-service`: the project's Mosquitto, configured by
# `safehome services up` (gateway.localsvc.MosquittoServer). It runs as the gateway's user so
# that the gateway can rewrite its accounts and reload it (broker.* settings) with no capability.
[Unit]
Description=Safe-Home Guardian Mosquitto broker
After=network-online.target
Wants=network-online.target
ConditionPathExists={directory}/mosquitto.conf

[Service]
Type=notify
NotifyAccess=main
User={o.user}
Group={o.user}
ExecStart={o.mosquitto} -c {directory}/mosquitto.conf
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
ReadWritePaths={directory}
LimitNOFILE=65536
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
{_HARDENING}

[Install]
WantedBy=multi-user.target
"""


def render_units(options: UnitOptions) -> dict[str, str]:
    """File name → unit text."""
    options.check()
    units = {
        GATEWAY_UNIT: _gateway(options, instance=False),
        STANDBY_TEMPLATE: _gateway(options, instance=True),
    }
    if options.services == "project":
        units[POSTGRES_UNIT] = _postgres(options)
        units[MOSQUITTO_UNIT] = _mosquitto(options)
    return units


def default_executable() -> Path:
    """The ``safehome`` entry point beside this Python (the installed virtualenv's), else the
    one on PATH."""
    beside = Path(sys.executable).parent / "safehome"
    found = str(beside) if beside.is_file() else shutil.which("safehome")
    if found is None:
        raise UnitError("no `safehome` executable found: pass --exec /path/to/venv/bin/safehome")
    return Path(found).absolute()


def write_units(units: dict[str, str], target: Path) -> list[Path]:
    """Write the units (mode 0644) into ``target``; return the paths written."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        path = target / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(path)
        written.append(path)
    return written
