"""Click-to-call metrics (gateway.telephony.metered): each placement counted by adapter and
status and timed, each recorded outcome counted by its code, on the gateway's registry as
``safehome_calls_total`` and ``safehome_call_provider_seconds``; labels carry no number."""

from __future__ import annotations

from prometheus_client import generate_latest

from gateway.metrics import Metrics
from gateway.telephony.adapter import CallRequest, Channel, Placement
from gateway.telephony.metered import MeteredAdapter, count_outcome
from gateway.telephony.phones import CallOutcome


class _Scripted:
    """An adapter answering the given placements in turn."""

    channel: Channel = "aliyun"
    needs_caller_phone = True

    def __init__(self, *answers: Placement) -> None:
        self._answers = list(answers)
        self.requests: list[CallRequest] = []

    def place(self, request: CallRequest) -> Placement:
        self.requests.append(request)
        return self._answers.pop(0)


def _sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_placements_and_outcomes_are_counted_and_timed() -> None:
    metrics = Metrics()
    inner = _Scripted(Placement("placed", detail="aliyun OK", provider_call_id="c1"),
                      Placement("failed", detail="http_500"))  # fmt: skip
    adapter = MeteredAdapter(inner, metrics)
    assert (adapter.channel, adapter.needs_caller_phone) == ("aliyun", True)
    first = adapter.place(CallRequest("13812341234", "13955556666", "wke-1"))
    second = adapter.place(CallRequest("13812341234", "13955556666", "wke-2"))
    assert (first.status, second.status) == ("placed", "failed")
    assert len(inner.requests) == 2
    count_outcome(metrics, "aliyun", CallOutcome.CONNECTED)
    count_outcome(None, "aliyun", CallOutcome.BUSY)  # an app without metrics: nothing
    calls = "safehome_calls_total"
    assert _sample(metrics, calls, {"adapter": "aliyun", "result": "placed"}) == 1
    assert _sample(metrics, calls, {"adapter": "aliyun", "result": "failed"}) == 1
    assert _sample(metrics, calls, {"adapter": "aliyun", "result": "connected"}) == 1
    assert _sample(metrics, calls, {"adapter": "aliyun", "result": "busy"}) == 0
    count = "safehome_call_provider_seconds_count"
    assert _sample(metrics, count, {"adapter": "aliyun"}) == 2
    text = generate_latest(metrics.registry).decode()
    assert "safehome_call_provider_seconds_bucket" in text
    assert "13812341234" not in text and "13955556666" not in text and "wke-" not in text
