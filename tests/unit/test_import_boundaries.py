"""The folder rules of the architecture table, held in place by parsing the code.

* ``analytics/`` imports only numpy, the standard library and itself (pure detection maths);
* ``devices/`` never imports ``gateway`` (the device side knows nothing of the gateway);
* the API never imports the storage layer's internals (migrations, COPY writer, Timescale
  helpers);
* SQL lives in the storage layer: a module outside ``gateway/storage/`` that holds an SQL
  statement fails the test unless it is in :data:`SQL_OUTSIDE_STORAGE`, the modules that
  still do today (issue 14 moves them; the list may only shrink — a module that no longer
  holds SQL must leave it too, so the list stays true).

Each failure names the file, the line and the rule.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SQL_OUTSIDE_STORAGE: frozenset[str] = frozenset()

_SQL = re.compile(
    rb"\b(SELECT\s+[\w*(]|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)"
)
_STORAGE_INTERNALS = frozenset({"migrate", "timescale", "writer"})
_STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


def _modules(folder: str) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def _imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _holds_sql(tree: ast.Module) -> int | None:
    """The line of the first string constant that is an SQL statement, if any."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            raw = node.value.encode() if isinstance(node.value, str) else node.value
            if _SQL.search(raw):
                return node.lineno
    return None


def test_analytics_imports_only_numpy_and_the_standard_library() -> None:
    bad = [
        f"{rel}:{line}: imports {name}"
        for rel, tree in _modules("analytics")
        for line, name in _imports(tree)
        if name.split(".")[0] not in _STDLIB | {"numpy", "analytics"}
    ]
    assert not bad, "analytics/ is pure (numpy + stdlib only):\n" + "\n".join(bad)


def test_devices_never_import_the_gateway() -> None:
    bad = [
        f"{rel}:{line}: imports {name}"
        for rel, tree in _modules("devices")
        for line, name in _imports(tree)
        if name.split(".")[0] == "gateway"
    ]
    assert not bad, "devices/ must not import gateway/:\n" + "\n".join(bad)


def test_the_api_never_imports_storage_internals() -> None:
    bad = [
        f"{rel}:{line}: imports {name}"
        for rel, tree in _modules("gateway/api")
        for line, name in _imports(tree)
        if name.startswith("gateway.storage.")
        and (name.split(".")[2] in _STORAGE_INTERNALS or name.split(".")[2].startswith("_"))
    ]
    assert not bad, "the API goes through storage repositories:\n" + "\n".join(bad)


def test_sql_lives_in_the_storage_layer() -> None:
    holding: dict[str, int] = {}
    for rel, tree in _modules("gateway"):
        if rel.startswith("gateway/storage/"):
            continue
        line = _holds_sql(tree)
        if line is not None:
            holding[rel] = line
    new = [
        f"{rel}:{line}: SQL outside gateway/storage/"
        for rel, line in holding.items()
        if rel not in SQL_OUTSIDE_STORAGE
    ]
    assert not new, "put new SQL in a gateway/storage/ repository:\n" + "\n".join(new)
    gone = sorted(SQL_OUTSIDE_STORAGE - holding.keys())
    assert not gone, f"no longer hold SQL, remove from SQL_OUTSIDE_STORAGE: {gone}"


def test_the_sql_detector_sees_statements_and_ignores_prose() -> None:
    def holds(src: str) -> bool:
        return _holds_sql(ast.parse(src)) is not None

    assert holds('q = b"SELECT id FROM incidents WHERE id = %s"')
    assert holds('q = "INSERT INTO audit_log (actor) VALUES (%s)"')
    assert holds('q = """UPDATE incidents SET state = %s"""')
    assert holds('conn.execute("SELECT 1")')
    assert not holds('msg = "select a channel from the list"')
    assert not holds('doc = "Insert the card into the reader"')
