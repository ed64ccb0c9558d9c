"""The demo's platform: a local receiver (:class:`PlatformReceiver`) with a generated shared
secret, and the environment that points the demo gateway's monthly push at it (due from
day 1, 00:00: the previous month is pushed when the gateway starts)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gateway.localsvc import free_port
from gateway.platform.receiver import PlatformReceiver


def _secret_file(var: Path) -> Path:
    path = var / "secrets" / "platform_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path


def demo_platform(var: Path) -> tuple[dict[str, str], PlatformReceiver]:
    """Start the receiver; the gateway's environment for it."""
    secret_file = _secret_file(var)
    directory = var / "platform-received"

    def stored(key: str, path: Path) -> None:
        print(f"[demo] monthly platform push {key} reached the local receiver: {path}",
              flush=True)  # fmt: skip

    receiver = PlatformReceiver(secret_file.read_bytes().strip(), directory, port=free_port(),
                                on_stored=stored).start()  # fmt: skip
    print(f"[demo] platform receiver {receiver.url()} (documents in {directory})", flush=True)
    env = {
        "SAFEHOME_PLATFORM__ENABLED": "true",
        "SAFEHOME_PLATFORM__URL": receiver.url(),
        "SAFEHOME_PLATFORM__SECRET_FILE": str(secret_file),
        "SAFEHOME_PLATFORM__PUSH_DAY": "1",
        "SAFEHOME_PLATFORM__PUSH_HOUR": "0",
        "SAFEHOME_PLATFORM__SOURCE_ID": "safehome-demo",
    }
    return env, receiver
