"""Visiting-care API errors put the Chinese sentence first, the English detail second."""

from __future__ import annotations

from gateway.errors import ConflictError, InvalidError, NotFoundError
from gateway.visits import messages


def test_chinese_first_english_second() -> None:
    hint = "扫描老人或床位二维码，或手动输入编码"
    exc = InvalidError("a home visit needs proof of presence", hint=hint)
    assert messages.detail_text(exc) == (
        "上门探访需要到场证明：扫描老人或床位二维码，或手动输入编码"
        "（a home visit needs proof of presence）"
    )
    assert messages.detail_text(NotFoundError("no such task")) == "没有这个敲门任务（no such task）"


def test_a_code_list_hint_stays_with_the_english() -> None:
    exc = InvalidError("unknown reason 'x'", hint="no_activity, unreachable")
    assert messages.detail_text(exc) == (
        "未知的敲门原因（unknown reason 'x'; no_activity, unreachable）"
    )


def test_an_error_not_in_the_table_still_starts_in_chinese() -> None:
    assert messages.detail_text(ConflictError("cannot resolve: state closed")) == (
        "与当前状态冲突（cannot resolve: state closed）"
    )


def test_every_message_of_the_table_is_chinese() -> None:
    for zh in [*messages.EXACT.values(), *(z for _, z in messages.PREFIX)]:
        assert messages._chinese(zh), zh
