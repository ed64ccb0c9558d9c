"""Import CSV checks: every bad row reported with the line it starts on (header = line 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

import gateway
from gateway.errors import InvalidError
from gateway.installer.csvcheck import check_csv
from gateway.registry_rules import PHONE_PATTERN, clean_phone


def _lines(kind: str, text: str | bytes) -> list[tuple[int, str | None]]:
    data = text.encode() if isinstance(text, str) else text
    return [(e.line, e.column) for e in check_csv(kind, data).errors]


def test_a_good_file_passes_and_counts_rows() -> None:
    text = "location_id,kind,label,address\nR101,room,Room 101,\nH1,home,Home 1,1 Main St\n"
    result = check_csv("locations", text.encode())
    assert result.errors == [] and result.rows == 2 and result.text == text


def test_every_bad_row_is_reported_with_its_line() -> None:
    text = (
        "bed_code,location_id\n"  # 1
        "BED-0001,R101\n"  # 2 ok
        "B1,R101\n"  # 3 code too short
        "BED-0003,\n"  # 4 empty location
        "\n"  # 5 blank: ignored
        "BED-0001,R102\n"  # 6 duplicate of line 2
        "BED-0007,R 1\n"  # 7 bad id
        "BED-0008,R101,extra\n"  # 8 too many fields
    )
    assert _lines("beds", text) == [
        (3, "bed_code"), (4, "location_id"), (6, "bed_code"), (7, "location_id"), (8, None),
    ]  # fmt: skip
    dup = check_csv("beds", text.encode()).errors[2]
    assert "line 2" in dup.message


def test_a_quoted_field_spanning_lines_keeps_later_line_numbers_right() -> None:
    text = (
        "location_id,kind,label,address\n"  # 1
        'H1,home,Home 1,"Flat 2\nBuilding 3"\n'  # 2-3
        "H2,castle,Home 2,\n"  # 4: bad kind
    )
    assert _lines("locations", text) == [(4, "kind")]


def test_header_problems_stop_before_rows() -> None:
    errors = check_csv("residents", b"elder_code,name\nELD-1,x\n").errors
    assert [e.line for e in errors] == [1, 1]
    assert "missing column(s): display_name, care_level, bed_code" in errors[0].message
    assert "unknown column(s): name" in errors[1].message


def test_residents_values_and_bom() -> None:
    text = (
        "\ufeffelder_code,display_name,care_level,bed_code,lives_alone\n"
        "ELD-0001,Wang Fang,2,BED-0001,yes\n"
        "ELD-0002,Li Lei,9,BED-0002,maybe\n"  # 3: care level, lives_alone
        "ELD-0003,Zhao Min,1,,no\n"  # 4: no bed yet is allowed
        "ELD-0004,Sun Li,x,BED-0001,\n"  # 5: care level, bed used twice
    )
    assert _lines("residents", text) == [
        (3, "care_level"), (3, "lives_alone"), (5, "care_level"), (5, "bed_code"),
    ]  # fmt: skip
    assert not check_csv("residents", text.encode()).text.startswith("\ufeff")


def test_not_utf8_names_the_line() -> None:
    data = b"bed_code,location_id\nBED-0001,R1\n" + "BED-0002,房间".encode("gbk") + b"\n"
    errors = check_csv("beds", data).errors
    assert [(e.line, "UTF-8" in e.message) for e in errors] == [(3, True)]


def test_empty_file() -> None:
    assert [e.line for e in check_csv("beds", b"").errors] == [1]


def test_phone_columns_use_the_telephony_rule_and_never_echo_the_number() -> None:
    text = (
        "location_id,kind,label,phone\n"
        "R101,room,Room 101,021-5555 0199\n"  # 2 ok
        "R102,room,Room 102,\n"  # 3 empty: keeps the current number
        "R103,room,Room 103,call 138 1234 x9\n"  # 4 not a number
    )
    errors = check_csv("locations", text.encode()).errors
    assert [(e.line, e.column) for e in errors] == [(4, "phone")]
    assert "not a phone number" in errors[0].message and "138" not in errors[0].message
    residents = (
        "elder_code,display_name,care_level,bed_code,phone\n"
        "ELD-0001,Wang Fang,2,BED-0001,+86 138 1234 1234\n"
        "ELD-0002,Li Lei,2,BED-0002,12\n"  # 3: too short
    )
    assert _lines("residents", residents) == [(3, "phone")]


def test_clean_phone_is_the_one_rule_of_cli_site_definition_and_imports() -> None:
    assert clean_phone(" (021) 5555-0199 ") == "(021) 5555-0199"
    assert clean_phone("") is None and clean_phone(None) is None and clean_phone("  ") is None
    for bad in ("12", "138x1234", "1" * 33):
        with pytest.raises(InvalidError, match="not a phone number") as exc:
            clean_phone(bad)
        assert bad not in str(exc.value)
    # The same pattern as the database's CHECK on residents.phone / locations.phone (0031).
    migration = (Path(gateway.__file__).parent / "storage" / "migrations").glob("0031_*.sql")
    assert f"phone ~ '{PHONE_PATTERN}'" in next(migration).read_text()
