"""OCPP throughput: the gateway against a bare `ocpp`-library central system, same load, one run.

N simulated 1.6 chargers (raw websockets, in this process, on the other core) each run round trips as fast
as answers come -- Heartbeat and MeterValues alternately, the MeterValues carrying energy, power, three
currents and SoC. The server under test is pinned to one core. Reported per server: messages per second,
CPU seconds per 1000 messages, RSS; then the gateway / bare ratios. The gateway commits every MeterValues
to SQLite (WAL, synchronous=FULL) before answering; the bare ones persist nothing. Two baselines: the
library's defaults (a thread hop per schema validation), and the same with validation in the event loop
as the gateway does it -- the fair comparison for what persistence and the rest cost.

    .venv/bin/python bench/ocpp_throughput.py [--chargers 50] [--seconds 10]
    .venv/bin/python bench/ocpp_throughput.py --chargers 200 --interval 10 --seconds 60   # the product's budget case

With --interval, each charger sends one MeterValues every that many seconds (starting at random offsets)
instead of as fast as it can: the share of a core used is then the figure to read.

The last line is JSON, for comparing runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from measure import free_port  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def gateway_config(directory: Path, port: int, web_port: int, chargers: int) -> Path:
    # The per-charger rate limit protects a site from one runaway charger; here it would measure itself.
    lines = [f'[gateway]\nid = "bench"\nstate_dir = "{directory / "state"}"\n',
             f'[ocpp]\nlisten = "127.0.0.1:{port}"\ntls_listen = ""\nrate_limit_per_s = 1000000.0\n',
             f'[web]\nlisten = "127.0.0.1:{web_port}"\n', "[site]\nlimit_w = 1000000\n"]  # fmt: skip
    for n in range(chargers):
        lines.append(f'[[chargers]]\nid = "B{n:04d}"\npassword = "bench-password-{n:04d}"\n')
    path = directory / "bench.toml"
    path.write_text("\n".join(lines))
    return path


def start_server(kind: str, directory: Path, chargers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if kind.startswith("bare"):
        command = [sys.executable, str(ROOT / "bench/bare_csms.py"), str(port)]
        if kind == "bare-inloop":
            command.append("--inloop")
    else:
        config = gateway_config(directory, port, free_port(), chargers)
        command = [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVEDGE_")} | {"EVEDGE_LOG_LEVEL": "warning"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(process.pid, {0})
    return process, f"ws://127.0.0.1:{port}/ocpp"


def meter_values(n: int) -> dict:
    sampled = [{"value": str(1_000_000 + n * 10), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
               {"value": "11000.0", "measurand": "Power.Active.Import", "unit": "W"}]  # fmt: skip
    sampled += [{"value": "15.9", "measurand": "Current.Import", "phase": p, "unit": "A"} for p in ("L1", "L2", "L3")]
    sampled.append({"value": "42.0", "measurand": "SoC", "unit": "Percent", "location": "EV"})
    return {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-21T10:00:00Z", "sampledValue": sampled}]}


async def charger(url: str, n: int, counts: list[int], stop: asyncio.Event, ready: asyncio.Barrier,
                  interval: float) -> None:  # fmt: skip
    auth = base64.b64encode(f"B{n:04d}:bench-password-{n:04d}".encode()).decode()
    for _ in range(100):  # the server may still be starting
        try:
            ws = await connect(f"{url}/B{n:04d}", subprotocols=["ocpp1.6"], compression=None,  # type: ignore[list-item]
                               additional_headers={"Authorization": f"Basic {auth}"})  # fmt: skip
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        raise RuntimeError(f"cannot connect to {url}")
    async with ws:
        boot = {"chargePointVendor": "bench", "chargePointModel": "load"}
        await ws.send(json.dumps([2, "boot", "BootNotification", boot]))
        await ws.recv()
        await ready.wait()
        if interval:
            await asyncio.sleep(random.uniform(0, interval))
        i = 0
        while not stop.is_set():
            i += 1
            if interval:
                frame = [2, str(i), "MeterValues", meter_values(i)]
            else:
                frame = [2, str(i), "Heartbeat", {}] if i % 2 else [2, str(i), "MeterValues", meter_values(i)]
            await ws.send(json.dumps(frame))
            answer = json.loads(await ws.recv())
            if answer[0] != 3:
                raise RuntimeError(f"unexpected answer {answer}")
            counts[n] += 1
            if interval:
                await asyncio.sleep(interval)


async def load(url: str, chargers: int, warmup: float, seconds: float, pid: int, interval: float) -> dict:
    counts = [0] * chargers
    stop = asyncio.Event()
    ready = asyncio.Barrier(chargers + 1)
    tasks = [asyncio.create_task(charger(url, n, counts, stop, ready, interval)) for n in range(chargers)]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(warmup)
    start_count, start_cpu, start_time = sum(counts), cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    messages, cpu, elapsed = sum(counts) - start_count, cpu_seconds(pid) - start_cpu, time.monotonic() - start_time
    rss = rss_mb(pid)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"messages": messages, "msg_per_s": messages / elapsed, "cpu_s_per_1000": 1000 * cpu / max(messages, 1),
            "cpu_share": cpu / elapsed, "rss_mb": rss}  # fmt: skip


def measure(kind: str, chargers: int, warmup: float, seconds: float, interval: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"evedge-bench-{kind}-") as directory:
        process, url = start_server(kind, Path(directory), chargers)
        try:
            return asyncio.run(load(url, chargers, warmup, seconds, process.pid, interval))
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between MeterValues (0: flat out)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})  # the load on the other core than the server

    kinds = ("bare", "bare-inloop", "evedge")
    results = {kind: measure(kind, args.chargers, args.warmup, args.seconds, args.interval) for kind in kinds}
    ratios = {base: results["evedge"]["cpu_s_per_1000"] / results[base]["cpu_s_per_1000"] for base in kinds[:2]}
    pace = f"a MeterValues every {args.interval:g} s each" if args.interval else "round trips flat out"
    print(f"OCPP 1.6, {args.chargers} chargers, {pace}, {args.seconds:g} s, server pinned to one core")
    print(f"{'':12} {'msg/s':>9} {'CPU s/1000 msg':>15} {'core used':>10} {'RSS MB':>8}")
    for kind, r in results.items():
        print(f"{kind:12} {r['msg_per_s']:9.0f} {r['cpu_s_per_1000']:15.3f} {r['cpu_share']:9.0%} {r['rss_mb']:8.1f}")
    for base, ratio in ratios.items():
        print(f"gateway / {base}: {ratio:.2f}x the CPU per message "
              f"({results['evedge']['msg_per_s'] / results[base]['msg_per_s']:.2f}x the throughput)")
    print(json.dumps({"bench": "ocpp_throughput", "chargers": args.chargers, "seconds": args.seconds,
                      "interval": args.interval, **results,
                      "cpu_ratio": ratios["bare"], "cpu_ratio_inloop": ratios["bare-inloop"]}))  # fmt: skip


if __name__ == "__main__":
    main()
