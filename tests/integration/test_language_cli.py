"""``safehome user language`` (a user's or a contact's language, issue 11 §2) and a site
definition's contact ``language``, against the real database: zh-CN by default, audited,
refused when unknown."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gateway.api.auth import create_user
from gateway.commissioning import apply_site_definition
from tests.integration.test_people_cli import _cli
from tests.support import Database

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]


def _definition(language: str | None) -> dict[str, Any]:
    contact: dict[str, Any] = {"id": "c-1", "resident": "r-1", "name": "李明", "channels": []}
    if language is not None:
        contact["language"] = language
    return {
        "site": {"id": "s-l", "name": "站点", "kind": "nursing_home"},
        "locations": [{"id": "l-1", "kind": "room", "label": "101"}],
        "beds": [{"id": "b-1", "code": "BED-1", "location": "l-1"}],
        "residents": [{"id": "r-1", "code": "E-1", "bed": "b-1", "name": "王芳", "care_level": 2}],
        "contacts": [contact],
    }


def test_user_and_contact_language(db: Database) -> None:
    with db.connect() as conn:
        apply_site_definition(conn, _definition(None))
        uid = create_user(conn, "duty-l", "duty_staff", PASSWORD, site_id="s-l")
    assert db.scalar("SELECT language FROM users WHERE user_id = %s", (uid,)) == "zh-CN"
    assert db.scalar("SELECT language FROM contacts WHERE contact_id = 'c-1'") == "zh-CN"

    done = _cli(db, "language", "duty-l", "en")
    assert done.returncode == 0, done.stderr
    assert db.scalar("SELECT language FROM users WHERE user_id = %s", (uid,)) == "en"
    assert _cli(db, "language", "--contact", "c-1", "en").returncode == 0
    assert db.scalar("SELECT language FROM contacts WHERE contact_id = 'c-1'") == "en"
    assert _cli(db, "language", "nobody", "en").returncode == 2
    assert _cli(db, "language", "--contact", "nobody", "en").returncode == 2
    assert _cli(db, "language", "duty-l", "fr").returncode == 2  # argparse: not a choice
    actions = db.rows(
        "SELECT action, target, data FROM audit_log WHERE action LIKE '%%language' ORDER BY seq"
    )
    assert [(a, t) for a, t, _ in actions] == [
        ("user.language", f"user:{uid}"),
        ("contact.language", "contact:c-1"),
    ]
    assert "李明" not in repr(actions)

    with db.connect() as conn:  # a definition without language keeps the contact's choice ...
        apply_site_definition(conn, _definition(None))
        assert db.scalar("SELECT language FROM contacts WHERE contact_id = 'c-1'") == "en"
        apply_site_definition(conn, _definition("zh-CN"))  # ... one with it sets it
        assert db.scalar("SELECT language FROM contacts WHERE contact_id = 'c-1'") == "zh-CN"
