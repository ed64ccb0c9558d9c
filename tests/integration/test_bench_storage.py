"""bench.storage (storage per device per day) runs end to end for a short span: its JSON last
line has the figures docs/operations.md cites, and every measured size is positive. No timing
is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STREAM_KEYS = {
    "table", "devices", "rows", "rows_per_device_day", "payload_bytes", "table_bytes",
    "index_bytes", "toast_bytes", "total_bytes", "bytes_per_row", "payload_bytes_per_row",
    "mb_per_device_day", "ratio_to_payload", "retention_days", "retention_mb_per_device",
    "compressed_bytes", "compressed_mb_per_device_day",
}  # fmt: skip


def test_a_short_run_reports_positive_sizes_per_stream() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.storage", "--hours", "0.1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["hours"] == 0.1
    assert out["edition"] in ("apache", "community")
    assert out["compression"] is (out["edition"] == "community")
    streams = out["streams"]
    # 6 minutes always hold a second's vitals and accel batches, heart rates (every 10-30 s)
    # and each device's first heartbeat (within its 300 s interval)
    assert {"bed_sensor.vitals", "wearable.accel", "wearable.hr", "heartbeat"} <= set(streams)
    assert streams["bed_sensor.vitals"]["table"] == "readings"
    assert streams["wearable.accel"]["table"] == "accel"
    for name, s in streams.items():
        assert set(s) == STREAM_KEYS, name
        assert s["rows"] > 0 and s["payload_bytes"] > 0, name
        assert s["total_bytes"] > 0 and s["table_bytes"] > 0 and s["index_bytes"] > 0, name
        assert s["mb_per_device_day"] > 0 and s["ratio_to_payload"] > 0, name
        assert s["retention_days"] >= 1 and s["retention_mb_per_device"] > 0, name
        assert (s["compressed_bytes"] is None) is (out["edition"] == "apache"), name
    assert streams["bed_sensor.vitals"]["rows_per_device_day"] == 86400
    assert set(out["devices"]) == {"bed_sensor", "wearable", "door_contact", "motion_sensor"}
    assert all(d["mb_per_day"] > 0 for d in out["devices"].values())
    assert out["stored_bytes"] == sum(s["total_bytes"] for s in streams.values())
    assert out["ratio_to_payload"] > 0
    assert "uncompressed" in done.stdout or out["edition"] == "community"
