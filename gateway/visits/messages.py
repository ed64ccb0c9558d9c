"""The zh-CN sentence of a visiting-care error (探访关爱, district and supervision routes):
the API's ``detail`` puts it first, the English detail second (zh-CN first everywhere), e.g.
``编码不属于该老人或其床位：请扫描该老人本人或其床位的二维码（the code is not this elder's
or their bed's code）``. Pure: a table of the service's English details (exact, or a prefix
for those carrying a value), and a sentence per error class for anything else."""

from __future__ import annotations

from gateway.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    SafehomeError,
)

EXACT: dict[str, str] = {
    "no such resident": "没有这位老人",
    "no such incident": "没有这个告警事件",
    "no such task": "没有这个敲门任务",
    "the task is already done": "该敲门任务已完成",
    "the assessment date must be between 2000 and today": "评估日期须在 2000 年至今天之间",
    "next_due must be within ten years of the assessment": "下次评估日期须在评估后十年内",
    "next_due must be after the assessment date": "下次评估日期须晚于评估日期",
    "not an active community worker": "不是在岗的社区工作者",
    "a visit cannot be in the future": "探访时间不能晚于现在",
    "a visit more than a year ago cannot be recorded": "不能记录一年以前的探访",
    "a concern is at most 200 characters": "每条关注事项最多 200 个字",
    "a home visit needs proof of presence": "上门探访需要到场证明",
    "the code is not this elder's or their bed's code": "编码不属于该老人或其床位",
    "开门，正常 needs proof of presence": "“开门，正常”需要到场证明",
    "the service time must be within the last year": "服务时间须在最近一年内",
}

PREFIX: tuple[tuple[str, str], ...] = (
    ("unknown assessment level", "未知的评估等级"),
    ("unknown risk categories", "未知的风险类别"),
    ("unknown service", "未知的服务项目"),
    ("unknown reason", "未知的敲门原因"),
    ("unknown result", "未知的敲门结果"),
    ("the incident is ", "该告警事件已不需要敲门"),
    ("not a district id", "不是有效的片区编号"),
    ("no site ", "没有这个站点"),
    ("site ", "该站点不属于任何片区"),
    ("no active user", "没有这个在岗用户"),
    ("user ", "该用户的角色不符"),
    ("not a month", "不是有效的月份"),
    ("month out of range", "月份超出范围"),
)

BY_CLASS: tuple[tuple[type[SafehomeError], str], ...] = (
    (NotFoundError, "未找到"),
    (ConflictError, "与当前状态冲突"),
    (ForbiddenError, "无权执行此操作"),
    (InvalidError, "输入无效"),
)


def zh_sentence(exc: SafehomeError) -> str:
    """The Chinese sentence for a domain error (a generic one per class if not in the table)."""
    if exc.detail in EXACT:
        return EXACT[exc.detail]
    for prefix, zh in PREFIX:
        if exc.detail.startswith(prefix):
            return zh
    return next((zh for cls, zh in BY_CLASS if isinstance(exc, cls)), "操作失败")


def _chinese(text: str) -> bool:
    return any("\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" for ch in text)


def detail_text(exc: SafehomeError) -> str:
    """The API's detail: the Chinese sentence first (with a Chinese hint), the English detail
    second (with a hint that is not Chinese, e.g. a list of codes)."""
    zh, english = zh_sentence(exc), exc.detail
    if exc.hint is not None and _chinese(exc.hint):
        zh = f"{zh}：{exc.hint}"
    elif exc.hint is not None:
        english = f"{english}; {exc.hint}"
    return f"{zh}（{english}）"
