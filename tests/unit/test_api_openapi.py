"""Every route of the API documents what it answers: the OpenAPI document carries a response
schema for a 2xx answer of every operation (a model, a typed list, a page or a file), never
a free-form object. The test names each operation that does not."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.api.app import build_app
from gateway.settings import load_settings

SECRET = "x" * 48


def _spec() -> dict[str, Any]:
    settings = load_settings(environ={"SAFEHOME_API__JWT_SECRET": SECRET})
    host: Any = SimpleNamespace(
        settings=settings, api_pool=object(), stopping=False, metrics=None,
        registry_changed=None,
    )  # fmt: skip
    return build_app(host).openapi()


def _typed(schema: dict[str, Any] | None) -> bool:
    """Whether ``schema`` says something: a reference, typed properties, a typed list of
    those, a string (pages, files, streams) or a choice of such."""
    if not schema:
        return False
    if "$ref" in schema or schema.get("type") == "string":
        return True
    if "anyOf" in schema:
        return all(_typed(s) or s.get("type") == "null" for s in schema["anyOf"])
    if schema.get("type") == "array":
        return _typed(schema.get("items"))
    return schema.get("type") == "object" and bool(schema.get("properties"))


def _undocumented(spec: dict[str, Any]) -> list[str]:
    missing = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            answers = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            if set(answers) == {"204"}:  # No Content: nothing to describe
                continue
            schemas = [
                media.get("schema")
                for answer in answers.values()
                for media in answer.get("content", {}).values()
            ]
            if not schemas or not all(_typed(s) for s in schemas):
                missing.append(f"{method.upper()} {path}")
    return missing


def test_every_route_documents_its_success_response() -> None:
    spec = _spec()
    missing = _undocumented(spec)
    assert not missing, f"routes without a 2xx response schema: {missing}"
    # A sample of the shapes the console and the tests read.
    schemas = spec["components"]["schemas"]
    listed = spec["paths"]["/incidents"]["get"]["responses"]["200"]["content"]
    assert listed["application/json"]["schema"]["items"]["$ref"].endswith("/IncidentListItem")
    assert {"bed_code", "time_to_acknowledge_s", "raised_at"} <= set(
        schemas["IncidentListItem"]["properties"]
    )
    assert {"timeline", "escalation", "escalation_status"} <= set(
        schemas["IncidentDetail"]["properties"]
    )


def test_the_check_names_a_route_without_a_schema() -> None:
    spec = {
        "paths": {
            "/free": {"get": {"responses": {"200": {"content": {"application/json": {
                "schema": {"type": "object", "additionalProperties": True}}}}}}},
            "/none": {"post": {"responses": {"201": {"description": "created"}}}},
            "/ok": {"get": {"responses": {"200": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/X"}}}}}}},
            "/gone": {"delete": {"responses": {"204": {"description": "No Content"}}}},
        }
    }  # fmt: skip
    assert _undocumented(spec) == ["GET /free", "POST /none"]
