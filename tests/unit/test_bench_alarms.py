"""bench/alarms.py runs (a few seconds) and measures something: a benchmark never rots unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_alarm_benchmark_measures_the_engine_beside_the_process_image():
    done = subprocess.run([sys.executable, "bench/alarms.py", "--seconds", "0.3", "--chargers", "50"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["alarms"] == 500 and figures["samples"] > 0 and figures["image_updates"] > 0
    assert figures["engine_us_per_sample"] > 0 and figures["ratio"] > 0 and figures["transitions"] > 0
