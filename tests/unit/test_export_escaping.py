"""Small hardening items of issue 10 §6: ids and codes match whole strings; commissioning
exports neither run formulas in a spreadsheet nor crash the PDF on mathtext."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import acceptance
from gateway.brokerauth import BrokerAuthError, _check_id
from gateway.errors import InvalidError
from gateway.notify.settings import CHANNEL_NAME
from gateway.registry_rules import check_code, check_id


@pytest.mark.parametrize("value", ["dev-1\n", "dev-1\r\n", "\ndev-1"])
def test_ids_and_codes_with_a_newline_are_refused(value: str) -> None:
    with pytest.raises(InvalidError):
        check_id(value, "device_id")
    with pytest.raises(InvalidError):
        check_code("BED-" + value, "bed_code")
    with pytest.raises(BrokerAuthError):
        _check_id(value, "username")
    assert CHANNEL_NAME.fullmatch("sms\n") is None
    assert check_id(value.strip(), "device_id") == "dev-1"


def _record(notes: str) -> dict[str, Any]:
    t = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    return {"record_id": 1, "test_id": "at-1", "device_id": "bt-1", "kind": "button",
            "bed_code": "+BED-1", "installer": "u-1", "started_at": t, "finished_at": t,
            "result": "passed", "steps": [{"name": "press", "status": "passed"}],
            "family_notified": False, "notes": notes}  # fmt: skip


@pytest.mark.parametrize(
    "notes", ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]
)
def test_csv_cells_starting_a_formula_are_quoted_as_text(notes: str) -> None:
    rows = list(csv.reader(io.StringIO(acceptance.records_csv([_record(notes)]), newline="")))
    cells = rows[1]
    assert cells[-1] == "'" + notes
    assert cells[4] == "'+BED-1"
    assert cells[2] == "bt-1"  # ordinary cells unchanged


def test_pdf_takes_mathtext_and_markup_in_notes_literally() -> None:
    notes = r"$\foo$ and $x^2$ and \$ and $$ 50% <b>"
    pdf = acceptance.records_pdf("s-1", [_record(notes)], families=["DejaVu Sans"])
    assert pdf[:5] == b"%PDF-"
