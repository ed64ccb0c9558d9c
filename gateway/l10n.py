"""The Python message catalogue (issue 11 §2, §3): every word the gateway itself writes to
people — family notifications, staff pages, the SLA report, the commissioning PDF — in
zh-CN (the default) and English, in one place. The browser pages keep their own catalogue
(``gateway/api/static/i18n.js``); the reason sentences here say the same as its REASONS.

Pure: no I/O, no clock reads. A message is a :meth:`str.format` template; :func:`t` fills
it. Times are shown in the site's zone *with the zone named* (``2026-12-04 14:02
(UTC+8)``); :func:`reason` turns an incident's details into a plain sentence
("跌倒：撞击 3.6g 后平躺未起，30 秒内未取消").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal

Lang = Literal["zh-CN", "en"]
LANGUAGES: Final[tuple[Lang, ...]] = ("zh-CN", "en")
DEFAULT_LANGUAGE: Final[Lang] = "zh-CN"

__all__ = [
    "DEFAULT_LANGUAGE",
    "INCIDENT_TYPES",
    "LANGUAGES",
    "MESSAGES",
    "REASONS",
    "Lang",
    "device_kind",
    "duration",
    "language",
    "local_clock",
    "local_time",
    "reason",
    "t",
    "type_label",
    "zone_name",
]


def language(value: str | None) -> Lang:
    """The catalogue language for a stored or requested choice: ``en`` (and ``en-GB``,
    ``EN`` …) is English, anything else (None, ``zh``, unknown) is zh-CN."""
    if value and value.strip().lower().split("-")[0].split("_")[0] == "en":
        return "en"
    return DEFAULT_LANGUAGE


# -- incident types and device kinds (the same words as the console's type.* / kind.*) ----

INCIDENT_TYPES: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "emergency_call": "紧急呼叫",
        "fall": "跌倒",
        "not_up": "未按时起床",
        "night_bed_exit": "夜间离床未归",
        "no_activity": "长时间无活动",
        "motionless_in_bed": "床上长时间不动",
        "vitals_abnormal": "生命体征异常",
        "apnea": "呼吸暂停",
        "not_worn": "设备未佩戴",
        "device_offline": "设备离线",
        "hub_offline": "网关离线",
        "site_offline": "站点离线",
        "low_battery": "电量低",
        "device_clock_wrong": "设备时钟错误",
        "smoke_alarm": "烟雾报警",
        "gas_alarm": "燃气泄漏报警",
        "water_leak": "漏水",
        "door_open_at_night": "夜间开门",
        "device_tampered": "设备被拆动",
        "door_unused": "多日未开门",
    },
    "en": {
        "emergency_call": "emergency call",
        "fall": "fall",
        "not_up": "not up",
        "night_bed_exit": "out of bed at night",
        "no_activity": "no activity",
        "motionless_in_bed": "motionless in bed",
        "vitals_abnormal": "abnormal vital signs",
        "apnea": "apnoea",
        "not_worn": "device not worn",
        "device_offline": "device offline",
        "hub_offline": "hub offline",
        "site_offline": "site offline",
        "low_battery": "low battery",
        "device_clock_wrong": "device clock wrong",
        "smoke_alarm": "smoke alarm",
        "gas_alarm": "gas alarm",
        "water_leak": "water leak",
        "door_open_at_night": "door open at night",
        "device_tampered": "device tampered",
        "door_unused": "door not opened for days",
    },
}

DEVICE_KINDS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "button": "呼叫按钮", "bed_sensor": "床垫传感器", "wearable": "手环",
        "home_hub": "家庭网关", "door_contact": "门磁", "motion_sensor": "红外感应器",
        "smoke_detector": "烟雾探测器", "gas_detector": "燃气探测器", "water_leak": "水浸探测器",
    },
    "en": {
        "button": "call button", "bed_sensor": "bed sensor", "wearable": "wristband",
        "home_hub": "home hub", "door_contact": "door contact", "motion_sensor": "motion sensor",
        "smoke_detector": "smoke detector", "gas_detector": "gas detector",
        "water_leak": "water leak sensor",
    },
}  # fmt: skip

_CODE_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def type_label(lang: Lang, incident_type: str) -> str:
    """The incident type's name (a sanitised code when unknown)."""
    return INCIDENT_TYPES[lang].get(incident_type, _CODE_SAFE.sub("_", incident_type)[:40])


def device_kind(lang: Lang, kind: Any) -> str:
    """A device kind's name (``设备`` / ``device`` when not given)."""
    if not isinstance(kind, str) or not kind:
        return t(lang, "device")
    return DEVICE_KINDS[lang].get(kind, _CODE_SAFE.sub("_", kind)[:40])


# -- messages ------------------------------------------------------------------------------

MESSAGES: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "brand": "安居守护",
        "device": "设备",
        "none": "—",
        # family / community-worker notification
        "notify.title": "【安居守护】{Label}",
        "notify.body": "{who} 于 {when} 发生{label}。{reason}请尽快联系服务中心确认。事件编号 {id}",
        "notify.who": "{name}（{place}）",
        # staff page
        "page.title": "【安居守护】请确认{again}：{Label}",
        "page.again": "（再次提醒）",
        "page.body": "{place} 于 {when} 发生{label}，尚无人确认。{reason}事件编号 {id}（{tier}）。",
        "page.link": "打开链接确认：{link}",
        "page.code": "或短信回复 {code} 确认",
        # the acknowledgement page of a paging link, and the answer to an SMS reply
        "ack.title": "确认事件 {id}",
        "ack.state": "{label}，状态：{state}，发生于 {when}",
        "ack.explain": "确认后由您负责处理，升级随即停止。",
        "ack.button": "我来处理（确认）",
        "ack.acknowledged": "已确认，升级已停止。请尽快前往处理。",
        "ack.already": "该事件已由他人确认，无需再次确认。",
        "ack.used": "此链接或回复码已使用过。",
        "ack.expired": "此链接或回复码已过期，请在值班台确认。",
        "ack.unknown": "链接或回复码无效。",
        "ack.no_user": "该账号已停用。",
        "state.raised": "待确认",
        "state.acknowledged": "已确认",
        "state.dispatched": "已派人",
        "state.on_scene": "已到场",
        "state.resolved": "已处理",
        "state.closed": "已关闭",
        "state.cancelled": "已取消",
        # the monthly SLA report
        "sla.title": "月度服务质量报告  站点 {site}  {month} 月  （时区 {zone}）",
        "sla.as_of": "统计截至 {when}",
        "sla.care": "照护事件",
        "sla.technical": "技术事件",
        "sla.col.target": "目标",
        "sla.col.share": "实际",
        "sla.col.n": "达标/计入",
        "sla.col.goal": "目标值",
        "sla.col.met": "达标",
        "sla.met.yes": "是",
        "sla.met.no": "否",
        "sla.target.answer": "{s} 秒内应答（{source}）",
        "sla.target.on_scene": "{m} 分钟内到场（{source}）",
        "sla.source.local": "{source}",
        "sla.source.international": "国际参考：{source}",
        "sla.col.from_raise": "自报警起用时",
        "sla.col.median": "中位数",
        "sla.col.p90": "90% 分位",
        "sla.to_ack": "至应答",
        "sla.to_scene": "至到场",
        "sla.to_resolve": "至处理完毕",
        "sla.late": "超过 180 秒应答或未应答：{n} 起",
        "sla.late.row": "  #{id:<6} {type}  报警 {raised}  {answer}",
        "sla.not_answered": "未应答",
        "sla.col.false": "误报（按类型）",
        "sla.col.rate": "误报率",
        "sla.resident_cancel": "住户自行取消",
        "sla.staff_cancel": "值班人员取消",
        "sla.online": "设备在线率",
        "sla.devices": "{n} 台设备",
        "sla.png.title": "{site} {month} 应答时间（照护事件）",
        "sla.png.answered": "已应答（占计入事件）",
        "sla.png.none": "本月没有已应答的照护事件",
        "sla.png.x": "自报警至应答的秒数",
        "sla.png.y": "累计占比",
        "sla.png.day": "{month} 日期（{zone}）",
        "sla.png.daily": "每日 60 秒内应答占比",
        "sla.png.limit": "{s} 秒",
        # durations
        "dur.s": "{s} 秒",
        "dur.m": "{m} 分钟",
        "dur.hm": "{h} 小时 {m} 分钟",
        "dur.h": "{h} 小时",
    },
    "en": {
        "brand": "Safe-Home Guardian",
        "device": "device",
        "none": "—",
        "notify.title": "[Safe-Home Guardian] {Label}",
        "notify.body": (
            "{who}: {label} at {when}. {reason}Please contact the care centre as soon as "
            "possible. Incident {id}"
        ),
        "notify.who": "{name} ({place})",
        "page.title": "[Safe-Home Guardian] Please acknowledge{again}: {Label}",
        "page.again": " (reminder)",
        "page.body": (
            "{place}: {label} at {when}, not yet acknowledged. {reason}Incident {id} ({tier})."
        ),
        "page.link": "Acknowledge: {link}",
        "page.code": "or reply {code} by SMS",
        "ack.title": "Acknowledge incident {id}",
        "ack.state": "{label}, state: {state}, raised {when}",
        "ack.explain": "Acknowledge: you take it and escalation stops.",
        "ack.button": "Acknowledge",
        "ack.acknowledged": "Acknowledged: escalation stopped. Please attend now.",
        "ack.already": "Someone already acknowledged this incident.",
        "ack.used": "This link or reply code was already used.",
        "ack.expired": "This link or reply code has expired: use the console.",
        "ack.unknown": "Invalid link or reply code.",
        "ack.no_user": "This account is deactivated.",
        "state.raised": "not acknowledged",
        "state.acknowledged": "acknowledged",
        "state.dispatched": "dispatched",
        "state.on_scene": "on scene",
        "state.resolved": "resolved",
        "state.closed": "closed",
        "state.cancelled": "cancelled",
        "sla.title": "SLA report  site {site}  month {month}  (time zone {zone})",
        "sla.as_of": "as of {when}",
        "sla.care": "care incidents",
        "sla.technical": "technical incidents",
        "sla.col.target": "target",
        "sla.col.share": "share",
        "sla.col.n": "n",
        "sla.col.goal": "target",
        "sla.col.met": "met",
        "sla.met.yes": "yes",
        "sla.met.no": "NO",
        "sla.target.answer": "answered within {s} s ({source})",
        "sla.target.on_scene": "on scene within {m} min ({source})",
        "sla.source.local": "{source}",
        "sla.source.international": "international reference: {source}",
        "sla.col.from_raise": "time from raise",
        "sla.col.median": "median",
        "sla.col.p90": "p90",
        "sla.to_ack": "to acknowledge",
        "sla.to_scene": "to on scene",
        "sla.to_resolve": "to resolve",
        "sla.late": "answered after 180 s or not answered: {n}",
        "sla.late.row": "  #{id:<6} {type}  raised {raised}  {answer}",
        "sla.not_answered": "not answered",
        "sla.col.false": "false alarms by type",
        "sla.col.rate": "rate",
        "sla.resident_cancel": "resident cancellations",
        "sla.staff_cancel": "staff cancellations",
        "sla.online": "device online rate",
        "sla.devices": "{n} devices",
        "sla.png.title": "SLA {site} {month}: time to answer (care incidents)",
        "sla.png.answered": "answered (share of counted)",
        "sla.png.none": "no answered care incidents",
        "sla.png.x": "seconds from raise to acknowledgement",
        "sla.png.y": "cumulative share",
        "sla.png.day": "day of {month} ({zone})",
        "sla.png.daily": "share answered within 60 s",
        "sla.png.limit": "{s} s",
        "dur.s": "{s} s",
        "dur.m": "{m} min",
        "dur.hm": "{h} h {m} min",
        "dur.h": "{h} h",
    },
}


def t(lang: Lang, key: str, /, **params: Any) -> str:
    """The message ``key`` in ``lang`` with its ``{placeholders}`` filled (zh-CN when the
    key is missing in ``lang``; the key itself when unknown)."""
    template = MESSAGES[lang].get(key) or MESSAGES[DEFAULT_LANGUAGE].get(key) or key
    return template.format(**params) if params else template


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal (CJK and full-width characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def ljust(text: str, columns: int) -> str:
    """``text`` padded on the right to ``columns`` terminal columns."""
    return text + " " * max(0, columns - width(text))


def rjust(text: str, columns: int) -> str:
    """``text`` padded on the left to ``columns`` terminal columns."""
    return " " * max(0, columns - width(text)) + text


# -- times ---------------------------------------------------------------------------------


def zone_name(utc_offset_s: int) -> str:
    """The site's zone as people read it: ``UTC+8``, ``UTC-3:30``, ``UTC+0``."""
    sign = "-" if utc_offset_s < 0 else "+"
    h, rest = divmod(abs(int(utc_offset_s)), 3600)
    m = rest // 60
    return f"UTC{sign}{h}" + (f":{m:02d}" if m else "")


def _local(at: datetime | float, utc_offset_s: int) -> datetime:
    if isinstance(at, datetime):
        aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    else:
        aware = datetime.fromtimestamp(float(at), UTC)
    return aware.astimezone(timezone(timedelta(seconds=utc_offset_s)))


def local_time(at: datetime | float, utc_offset_s: int, *, seconds: bool = False) -> str:
    """``YYYY-MM-DD HH:MM (UTC+8)`` in the site's zone (``at``: a datetime, naive = UTC,
    or epoch seconds)."""
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return f"{_local(at, utc_offset_s).strftime(fmt)} ({zone_name(utc_offset_s)})"


def local_clock(at: datetime | float, utc_offset_s: int) -> str:
    """``MM-DD HH:MM (UTC+8)``: a short time in the site's zone, for sentences."""
    return f"{_local(at, utc_offset_s).strftime('%m-%d %H:%M')} ({zone_name(utc_offset_s)})"


def duration(lang: Lang, seconds: float) -> str:
    """A plain duration: ``45 秒``, ``5 分钟``, ``1 小时 30 分钟`` (``45 s``, ``5 min``…)."""
    s = max(0, int(seconds))
    if s < 60:
        return t(lang, "dur.s", s=s)
    if s < 3600:
        return t(lang, "dur.m", m=s // 60)
    h, m = s // 3600, (s % 3600) // 60
    return t(lang, "dur.hm", h=h, m=m) if m else t(lang, "dur.h", h=h)


# -- reasons -------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _text(value: Any, limit: int = 20) -> str:
    """A detail shown as text: short, without control characters ("—" when missing)."""
    if value is None or value == "":
        return "—"
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(value))[:limit]


class _Ctx:
    """What a reason sentence may use: the details and the site's zone."""

    __slots__ = ("d", "lang", "offset")

    def __init__(self, lang: Lang, details: Mapping[str, Any], offset: int) -> None:
        self.lang, self.d, self.offset = lang, details, offset

    def num(self, key: str) -> float | None:
        return _num(self.d.get(key))

    def text(self, key: str) -> str:
        return _text(self.d.get(key))

    def dur(self, key: str, default: float = 0.0) -> str:
        value = self.num(key)
        return duration(self.lang, default if value is None else value)

    def clock(self, key: str) -> str:
        value = self.num(key)
        return "—" if value is None or value <= 0 else local_clock(value, self.offset)

    def kind(self) -> str:
        return device_kind(self.lang, self.d.get("device_kind"))

    def count(self, key: str, default: str) -> str:
        value = self.num(key)
        return default if value is None else f"{value:.0f}"


Reason = Callable[[_Ctx], str | None]


def _fall_zh(c: _Ctx) -> str:
    g = c.num("peak_g")
    lying = (c.num("posture_change_deg") or 0.0) >= 60
    then = "平躺未起" if lying else "未起身"
    what = f"撞击 {g:.1f}g 后{then}" if g is not None else "手环报告跌倒"
    window = c.num("confirm_window_s")
    wait = 30 if window is None else window
    confirm = "住户按了求助键" if c.d.get("sos") else f"{wait:.0f} 秒内未取消"
    return f"跌倒：{what}，{confirm}"


def _fall_en(c: _Ctx) -> str:
    g = c.num("peak_g")
    lying = (c.num("posture_change_deg") or 0.0) >= 60
    then = "lying still" if lying else "did not get up"
    what = f"impact {g:.1f} g, then {then}" if g is not None else "the wristband reported a fall"
    window = c.num("confirm_window_s")
    confirm = (
        "the resident pressed SOS"
        if c.d.get("sos")
        else f"not cancelled within {30 if window is None else window:.0f} s"
    )
    return f"Fall: {what}; {confirm}"


_VITAL_ZH = {"heart_rate": ("心率", "次/分"), "breathing_rate": ("呼吸", "次/分"),
             "spo2": ("血氧", "%"), "temperature": ("体温", "°C")}  # fmt: skip
_VITAL_EN = {"heart_rate": ("heart rate", "/min"), "breathing_rate": ("breathing", "/min"),
             "spo2": ("SpO2", " %"), "temperature": ("temperature", " °C")}  # fmt: skip


def _vitals(c: _Ctx, table: Mapping[str, tuple[str, str]], fmt: str, generic: str) -> str:
    metric = str(c.d.get("metric", ""))
    value, limit = c.num("value"), c.num("limit")
    if metric not in table or value is None:
        return generic
    name, unit = table[metric]
    lim = "—" if limit is None else f"{limit:g}{unit}"
    return fmt.format(name=name, value=f"{value:g}{unit}", limit=lim)


REASONS: Final[dict[Lang, dict[str, Reason]]] = {
    "zh-CN": {
        "emergency_call": lambda c: (
            "紧急呼叫：住户长按呼叫按钮" if c.d.get("long_press") else "紧急呼叫：住户按下呼叫按钮"
        ),
        "fall": _fall_zh,
        "not_up": lambda c: (
            f"未起床：平时 {c.text('usual_rise_late')} 前起床，到 {c.text('deadline')} 仍在床上"
        ),
        "night_bed_exit": lambda c: (
            f"夜间离床：{c.text('exit_time')} 下床，{c.dur('tolerance_s')}内未回床"
        ),
        "no_activity": lambda c: (
            f"无活动：{c.dur('no_activity_s')}内没有任何活动迹象"
            if c.num("no_activity_s")
            else "无活动：长时间没有任何活动迹象"
        ),
        "motionless_in_bed": lambda c: (
            f"床上不动：在床上 {c.dur('limit_s')}没有翻身或活动"
            if c.num("limit_s") is not None
            else "床上不动：在床上长时间没有翻身或活动"
        ),
        "vitals_abnormal": lambda c: _vitals(
            c,
            _VITAL_ZH,
            "体征异常：{name} {value}，超出界限 {limit}",
            "体征异常：生命体征超出设定范围",
        ),
        "apnea": lambda c: (
            f"呼吸暂停：最长一次 {c.dur('longest_s')}，共 {c.count('count', '多')} 次"
            if c.num("longest_s") is not None
            else "呼吸暂停：床垫传感器测到呼吸暂停"
        ),
        "not_worn": lambda c: f"未佩戴：{c.kind()}未戴在身上",
        "device_offline": lambda c: f"设备离线：{c.kind()}自 {c.clock('last_seen')} 起无消息",
        "hub_offline": lambda c: (
            f"网关离线：此处 {c.count('devices', '全部')} 台设备自 {c.clock('last_seen')} 起均无"
            "消息，可能是家中网关、路由器或电源"
        ),
        "site_offline": lambda c: (
            f"站点离线：{c.count('devices', '全部')} 台设备自 {c.clock('last_seen')} 起均无消息，"
            "可能是站点网络中断"
        ),
        "low_battery": lambda c: (
            f"电量低：{c.kind()}剩余 {c.count('battery_pct', '—')}%，请更换电池或充电"
        ),
        "device_clock_wrong": lambda c: f"设备时钟错误：{c.kind()}的时钟与网关不一致，请检查设备",
        "smoke_alarm": lambda _: "烟雾报警：烟雾探测器报警，请立即确认是否起火",
        "gas_alarm": lambda _: "燃气报警：燃气探测器报警，请立即关闭气源、开窗通风",
        "water_leak": lambda _: "漏水：水浸探测器测到漏水",
        "door_open_at_night": lambda _: "夜间开门：夜间家门被打开，住户可能外出",
        "device_tampered": lambda c: f"设备被拆动：{c.kind()}被打开或移动",
        "door_unused": lambda c: (
            f"多日未开门：家门已 {c.count('unused_days', '多')} 天未打开"
            f"（上次开门 {c.clock('last_opened')}），请电话或上门确认老人安好"
        ),
    },
    "en": {
        "emergency_call": lambda c: (
            "Emergency call: the resident held the call button"
            if c.d.get("long_press")
            else "Emergency call: the resident pressed the call button"
        ),
        "fall": _fall_en,
        "not_up": lambda c: (
            f"Not up: usually up by {c.text('usual_rise_late')}, still in bed at "
            f"{c.text('deadline')}"
        ),
        "night_bed_exit": lambda c: (
            f"Night bed exit: got up at {c.text('exit_time')}, not back within "
            f"{c.dur('tolerance_s')}"
        ),
        "no_activity": lambda c: (
            f"No activity: no sign of activity for {c.dur('no_activity_s')}"
            if c.num("no_activity_s")
            else "No activity: no sign of activity for a long time"
        ),
        "motionless_in_bed": lambda c: (
            f"Motionless in bed: no turning or movement for {c.dur('limit_s')}"
            if c.num("limit_s") is not None
            else "Motionless in bed: no turning or movement for a long time"
        ),
        "vitals_abnormal": lambda c: _vitals(
            c,
            _VITAL_EN,
            "Abnormal vitals: {name} {value}, beyond the limit {limit}",
            "Abnormal vitals: vital signs outside the set range",
        ),
        "apnea": lambda c: (
            f"Apnoea: longest pause {c.dur('longest_s')}, {c.count('count', 'several')} pauses"
            if c.num("longest_s") is not None
            else "Apnoea: the bed sensor measured breathing pauses"
        ),
        "not_worn": lambda c: f"Not worn: the {c.kind()} is not being worn",
        "device_offline": lambda c: (
            f"Device offline: {c.kind()} silent since {c.clock('last_seen')}"
        ),
        "hub_offline": lambda c: (
            f"Hub offline: all {c.count('devices', '')} devices here silent since "
            f"{c.clock('last_seen')}; likely the home's hub, router or power"
        ),
        "site_offline": lambda c: (
            f"Site offline: all {c.count('devices', '')} devices silent since "
            f"{c.clock('last_seen')}; likely the site's network"
        ),
        "low_battery": lambda c: (
            f"Low battery: {c.kind()} at {c.count('battery_pct', '—')}%, replace or charge it"
        ),
        "device_clock_wrong": lambda c: (
            f"Device clock wrong: the {c.kind()}'s clock disagrees with the gateway; check it"
        ),
        "smoke_alarm": lambda _: "Smoke alarm: the smoke detector went off; check for fire now",
        "gas_alarm": lambda _: (
            "Gas alarm: the gas detector went off; shut off the gas and air the home"
        ),
        "water_leak": lambda _: "Water leak: the water leak sensor detected water",
        "door_open_at_night": lambda _: (
            "Door open at night: the front door opened at night; the resident may have left"
        ),
        "device_tampered": lambda c: f"Device tampered: the {c.kind()} was opened or moved",
        "door_unused": lambda c: (
            f"Door not opened for {c.count('unused_days', 'several')} days (last opened "
            f"{c.clock('last_opened')}): call or visit to check the resident is well"
        ),
    },
}


def reason(
    lang: Lang, incident_type: str, details: Mapping[str, Any] | None, utc_offset_s: int
) -> str | None:
    """The plain sentence for an incident's reason, from its details (None: unknown type,
    or details too broken to say anything)."""
    fn = REASONS[lang].get(incident_type)
    if fn is None:
        return None
    try:
        return fn(_Ctx(lang, details or {}, utc_offset_s))
    except (TypeError, ValueError, KeyError, OverflowError):
        return None
