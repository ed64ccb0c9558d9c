"""Lint of deploy/: the Dockerfiles and compose.yaml, parsed and held to the project's rules
(no image is pulled or built here): builds from this repository, non-root, no ``latest``,
health checks, secrets as files, lock file with hashes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILES = sorted(DEPLOY.rglob("Dockerfile"))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            result.append([])
        assert result, f"{path}: instruction before FROM"
        result[-1].append(ins)
    return result


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_there_are_dockerfiles_for_gateway_database_and_broker() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in DOCKERFILES}
    assert names == {"Dockerfile", "postgres/Dockerfile", "mosquitto/Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_dockerfile_rules(path: Path) -> None:
    built = stages(path)
    internal = set()
    for stage in built:
        image, *alias = stage[0][1].split()
        if alias:
            internal.add(alias[-1])
        if image in internal:
            continue
        assert re.fullmatch(r"debian:12[\w.-]*(@sha256:[0-9a-f]{64})?", image), (
            f"{path}: base image must be Debian 12 with an explicit tag, got {image}"
        )
        assert not image.endswith(":latest")
    final = built[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, f"{path}: the final stage must switch to a non-root USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any(word == "HEALTHCHECK" for word, _ in final), f"{path}: HEALTHCHECK missing"
    for word, args in instructions(path):
        assert word != "ADD" or not re.search(r"https?://", args), "no ADD from URLs"
        if word == "RUN" and "apt-get install" in args:
            assert "--no-install-recommends" in args
            assert "apt-get update" in args  # in the same layer as the install


def test_gateway_image_checks_health_and_installs_from_the_lock() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    health = [a for w, a in instructions(DEPLOY / "Dockerfile") if w == "HEALTHCHECK"]
    assert "/health" in health[0]
    assert "--require-hashes -r /tmp/requirements.lock" in text
    for src in ("gateway", "devices", "analytics", "config"):
        assert f"COPY {src} /opt/safehome/app/{src}" in text


def test_lock_files_pin_every_package_with_hashes() -> None:
    for name in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / name).read_text()
        pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", text, flags=re.M)
        assert len(pins) > 20, name
        blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text)[1:]  # [0]: the header
        assert len(blocks) == len(pins), name
        for block in blocks:
            assert "--hash=sha256:" in block, f"{name}: {block.splitlines()[0]} has no hash"
    runtime = (ROOT / "requirements.lock").read_text()
    for dep in ("fastapi", "psycopg", "paho-mqtt", "prometheus-client", "pydantic-settings"):
        assert re.search(rf"^{dep}==", runtime, flags=re.M), dep
    assert "pytest==" not in runtime  # the image carries no test tools


def test_compose_builds_everything_and_runs_nothing_as_root() -> None:
    doc = compose()
    services: dict[str, dict[str, Any]] = doc["services"]
    assert {"db", "mosquitto", "gateway", "migrate"} <= set(services)
    built_images = {s["image"] for s in services.values() if "build" in s}
    for name, svc in services.items():
        image = svc.get("image")
        assert image and ":" in image and not image.endswith(":latest"), name
        # An image without build: must be one this file builds (nothing is pulled).
        assert "build" in svc or image in built_images, f"{name}: {image} would be pulled"
        if "build" in svc:
            assert svc["build"]["context"] == ".."
            assert (ROOT / svc["build"]["dockerfile"]).is_file(), name
        assert str(svc.get("user", "")).split(":")[0] not in {"", "root", "0"}, name
        assert not svc.get("privileged"), name
        assert svc.get("network_mode") != "host", name
        for key, value in (svc.get("environment") or {}).items():
            secretish = re.search(r"PASSWORD|SECRET|TOKEN", key) and not key.endswith("_FILE")
            assert not secretish, f"{name}: {key}={value} (pass secrets as *_FILE)"


def test_compose_gateway_health_and_dependencies() -> None:
    services = compose()["services"]
    gw = services["gateway"]
    assert any("/health" in part for part in gw["healthcheck"]["test"])
    assert gw["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert gw["read_only"] is True and gw["cap_drop"] == ["ALL"]
    assert set(gw["secrets"]) <= set(compose()["secrets"])
    for secret in compose()["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text()


def test_compose_database_builds_timescaledb_as_the_project_does() -> None:
    text = (DEPLOY / "postgres" / "Dockerfile").read_text()
    assert "COPY scripts/install-timescaledb.sh" in text
    assert "postgresql-15" in text
    assert (
        "shared_preload_libraries = 'timescaledb'"
        in (DEPLOY / "postgres" / "entrypoint.sh").read_text()
    )
