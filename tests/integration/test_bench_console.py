"""bench/console.py runs (a few seconds on a small site) and measures something: it never rots unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_the_console_benchmark_measures():
    done = subprocess.run(
        [sys.executable, "bench/console.py", "--chargers", "10", "--interval", "1", "--streams", "2", "--seconds", "2",
         "--rows", "500"], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    quiet, busy, _ = result["phases"]
    assert quiet["round_trips"] > 0 and busy["round_trips"] > 0 and busy["rtt_p99_ms"] > 0
    assert busy["stream_msgs_per_s"] > 0 and busy["stream_bytes_per_s"] > 0 and quiet["stream_msgs_per_s"] == 0
    assert result["first_load_bytes"] > 10_000 and "/static/vendor/htmx.min.js" in result["first_load"]
    assert result["exports"]["xlsx"]["bytes"] > 0 and result["exports"]["csv"]["bytes"] > 0
