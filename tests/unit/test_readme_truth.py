"""README.md and docs/ against the code they describe: the configuration table names every
settings section and only keys that exist, the secrets paragraph lists exactly the secret
settings, every CLI command, benchmark and doc page is listed, and every link to a heading
of README.md or docs/*.md lands on one."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.cli import build_parser
from gateway.settings import Settings, secret_paths

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _section(title: str, until: str) -> str:
    return README.split(title, 1)[1].split(until, 1)[0]


def _config_keys() -> list[str]:
    """Keys of the configuration table, ``a.b`` / ``c`` shorthand expanded to ``a.b``, ``a.c``."""
    keys: list[str] = []
    for row in _section("## Configuration", "\n## ").splitlines():
        if not row.startswith("| `"):
            continue
        base = ""
        for key in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if "." in key or key in Settings.model_fields:
                base = key.rsplit(".", 1)[0] if "." in key else ""
                keys.append(key)
            else:
                keys.append(f"{base}.{key}" if base else key)
    return keys


def _exists(key: str) -> bool:
    model: type[BaseModel] = Settings
    for part in key.split("."):
        if part == "*" or part.startswith("<"):
            return True  # a family of keys: `analysis.*`, `retention.<table>_days`
        field = model.model_fields.get(part)
        if field is None:
            return False
        sub = field.annotation
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return True  # a leaf (or a table of them)
        model = sub
    return True


def test_the_configuration_table_names_every_section_and_only_real_keys() -> None:
    keys = _config_keys()
    assert {k.split(".", 1)[0] for k in keys} == set(Settings.model_fields)
    assert [k for k in keys if not _exists(k)] == []


def test_the_secrets_paragraph_lists_exactly_the_secret_settings() -> None:
    text = _section("Secrets — every `SecretStr` setting at any depth:", "are refused in TOML")
    listed: set[str] = set()
    previous = ""
    for written in re.findall(r"`([^`]+)`", text):
        # `notify.webhooks.<name>.url` / `.secret`: the second relative to the first
        key = previous.rsplit(".", 1)[0] + written if written.startswith(".") else written
        previous = key
        listed.add(re.sub(r"<[^>]+>", "*", key))
    assert listed == {".".join(p) for p in secret_paths(Settings)}


def test_every_command_is_in_the_cli_tables() -> None:
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    text = _section("## CLI", "## Configuration")
    missing = [c for c in commands.choices if not re.search(rf"(safehome |`){c}\b", text)]
    assert missing == []


def test_every_benchmark_and_doc_page_is_listed() -> None:
    benches = {p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__"}
    assert {b for b in benches if f"`bench.{b}" not in README} == set()
    (docs_row,) = [r for r in README.splitlines() if r.startswith("| `docs/` |")]
    assert {d.name for d in DOCS if f"(docs/{d.name})" not in docs_row} == set()


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_link_to_a_heading_lands_on_one(page: Path) -> None:
    bad = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text()):
        path = (page.parent / target) if target else page
        if path.suffix != ".md" or not path.exists():
            continue
        headings = re.findall(r"^#+\s+(.*)$", path.read_text(), re.M)
        if anchor not in {_slug(h) for h in headings}:
            bad.append(f"{target}#{anchor}")
    assert bad == []
