"""The console must never make the gateway slow for its chargers. Side by side in one run, on a site of N chargers
(OCPP 1.6, raw websockets in this process on the other core) each sending a MeterValues every 10 s, with the
gateway in a process of its own pinned to one core:

- OCPP round trip (MeterValues sent -> answer read) p50/p99 and the gateway's event-loop lag (p99 and worst of
  the last minute, from /api/v1/health), with no console open, then with S browsers' worth of live streams on
  the overview (the heaviest page: every charger's values), then with none again;
- the CPU each open stream costs (share of one core), and what it carries (messages and bytes per second);
- the first load of the overview as a browser does it (the page and every file it loads, gzip): bytes on the wire;
- an export of R sessions as .xlsx and CSV through the API: time, and how much the gateway's RSS grew meanwhile.

    .venv/bin/python bench/console.py [--chargers 200] [--streams 10] [--seconds 60] [--rows 100000]

Aims (issue 13): p99 unchanged within noise, < 1 % of a core per open stream, < 150 KB first load, an export of
100k sessions growing the RSS by < 30 MB. The last line is JSON, for comparing runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from measure import free_port, pin, wait_for_port  # noqa: E402 -- bench/, beside this script
from ocpp_throughput import cpu_seconds, rss_mb  # noqa: E402

USER, PASSWORD = "bench", "bench-password"


def config(directory: Path, ocpp_port: int, web_port: int, chargers: int) -> Path:
    # No load cap: it would send charging profiles to chargers that only send. The rate limit would measure itself.
    lines = [f'[gateway]\nid = "bench"\nstate_dir = "{directory / "state"}"\n',
             f'[ocpp]\nlisten = "127.0.0.1:{ocpp_port}"\ntls_listen = ""\nrate_limit_per_s = 1000000.0\n',
             f'[web]\nlisten = "127.0.0.1:{web_port}"\n', "[loadcap]\nenabled = false\n"]  # fmt: skip
    lines += [f'[[chargers]]\nid = "B{n:04d}"\npassword = "bench-password-{n:04d}"\n' for n in range(chargers)]
    path = directory / "bench.toml"
    path.write_text("\n".join(lines))
    return path


async def prepare(directory: Path, rows: int) -> str:
    """The store the gateway will open: a console user, an API token, and `rows` past sessions."""
    from gateway.auth import Role
    from gateway.store import DB_NAME, Store

    async with Store(directory / "state") as store:
        await store.accounts.add_user(USER, PASSWORD, Role.operator)
        token = await store.accounts.create_token(Role.guest, "bench")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with sqlite3.connect(directory / "state" / DB_NAME) as db:
        db.executemany(
            "INSERT INTO transactions (charger_id, evse, connector, id_tag, started_at, stopped_at, meter_start_wh, "
            "meter_last_wh, meter_stop_wh, energy_wh, soc_start, soc_end, stop_reason, updated_at) "
            "VALUES (?, 1, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Local', ?)",
            (_session(n, start) for n in range(rows)),
        )
    return token


def _session(n: int, start: datetime) -> tuple:
    began, ended = start + timedelta(minutes=5 * n), start + timedelta(minutes=5 * n + 40)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # noqa: E731
    energy = 1000.0 + n % 50000
    return (f"B{n % 200:04d}", f"BADGE-{n % 997}", iso(began), iso(ended), 1_000_000.0, 1_000_000.0 + energy,
            1_000_000.0 + energy, energy, 20.0, 80.0, iso(ended))  # fmt: skip


def meter_values(n: int, rng: random.Random) -> dict:
    sampled = [{"value": str(1_000_000 + n * 30), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
               {"value": f"{rng.uniform(3000, 11000):.1f}", "measurand": "Power.Active.Import", "unit": "W"},
               {"value": f"{20 + n % 80}", "measurand": "SoC", "unit": "Percent", "location": "EV"}]  # fmt: skip
    return {"connectorId": 1, "meterValue": [{"timestamp": datetime.now(UTC).isoformat(), "sampledValue": sampled}]}


async def charger(url: str, n: int, interval: float, rtts: list[float], stop: asyncio.Event,
                  ready: asyncio.Barrier) -> None:  # fmt: skip
    auth = base64.b64encode(f"B{n:04d}:bench-password-{n:04d}".encode()).decode()
    rng = random.Random(n)
    async with connect(f"{url}/B{n:04d}", subprotocols=["ocpp1.6"], compression=None,  # type: ignore[list-item]
                       additional_headers={"Authorization": f"Basic {auth}"}) as ws:  # fmt: skip
        await ws.send(json.dumps([2, "boot", "BootNotification", {"chargePointVendor": "bench", "chargePointModel": "x"}]))
        await ws.recv()
        await ws.send(json.dumps([2, "s", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                                   "status": "Charging"}]))  # fmt: skip
        await ws.recv()
        await ready.wait()
        await asyncio.sleep(rng.uniform(0, interval))
        i = 0
        while not stop.is_set():
            i += 1
            began = time.perf_counter()
            await ws.send(json.dumps([2, str(i), "MeterValues", meter_values(i, rng)]))
            while True:  # a request from the gateway (none expected) is answered and skipped
                frame = json.loads(await ws.recv())
                if frame[0] == 2:
                    await ws.send(json.dumps([4, frame[1], "NotImplemented", "bench", {}]))
                    continue
                break
            rtts.append(time.perf_counter() - began)
            await asyncio.sleep(interval)


async def stream(client: httpx.AsyncClient, counts: dict[str, int], opened: asyncio.Event) -> None:
    async with client.stream("GET", "/live/overview") as response:
        opened.set()
        async for chunk in response.aiter_bytes():
            counts["bytes"] += len(chunk)
            counts["messages"] += chunk.count(b"\n\n")


async def logged_in(web: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=web, timeout=60)
    form = await client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)[1]
    done = await client.post("/login", data={"csrf": token, "name": USER, "password": PASSWORD})
    assert done.status_code == 303, done.text
    return client


async def first_load(client: httpx.AsyncClient) -> dict[str, int]:
    """The overview and what it loads, gzip as a browser asks: bytes on the wire per file."""
    headers = {"Accept-Encoding": "gzip"}
    page = await client.get("/", headers=headers)
    sizes = {"/": page.num_bytes_downloaded}
    for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text):
        sizes[asset.split("?")[0]] = (await client.get(asset, headers=headers)).num_bytes_downloaded
    return sizes


async def phase(name: str, web: str, pid: int, rtts: list[float], seconds: float, streams: int) -> dict:
    clients = [await logged_in(web) for _ in range(streams)]
    counts = [{"bytes": 0, "messages": 0} for _ in clients]
    opened = [asyncio.Event() for _ in clients]
    tasks = [asyncio.create_task(stream(c, n, o)) for c, n, o in zip(clients, counts, opened)]
    await asyncio.gather(*(o.wait() for o in opened))
    await asyncio.sleep(2)  # each stream's first message (every value once) is not what it costs to keep open
    base = [dict(c) for c in counts]
    del rtts[:]
    cpu, began = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, elapsed = cpu_seconds(pid) - cpu, time.monotonic() - began
    async with httpx.AsyncClient(base_url=web) as plain:
        lag = (await plain.get("/api/v1/health")).json()["parts"]["web"]["loop_lag_ms"]
    samples = sorted(rtts)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients:
        await client.aclose()
    carried = [{k: c[k] - b[k] for k in c} for c, b in zip(counts, base)]
    return {"phase": name, "streams": streams, "round_trips": len(samples),
            "rtt_p50_ms": round(1000 * statistics.median(samples), 2) if samples else None,
            "rtt_p99_ms": round(1000 * samples[int(0.99 * (len(samples) - 1))], 2) if samples else None,
            "lag_p99_ms": lag["p99"] if lag else None, "lag_max_ms": lag["max"] if lag else None,
            "cpu_share": round(cpu / elapsed, 4),
            "stream_msgs_per_s": round(sum(c["messages"] for c in carried) / elapsed / max(streams, 1), 2),
            "stream_bytes_per_s": round(sum(c["bytes"] for c in carried) / elapsed / max(streams, 1))}  # fmt: skip


async def export(web: str, token: str, pid: int, kind: str) -> dict:
    """One export through the API while the RSS of the gateway is watched."""
    before, peak = rss_mb(pid), 0.0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {token}"}, timeout=600) as api:
        size = 0
        async with api.stream("GET", "/api/v1/transactions", params={"format": kind}) as response:
            assert response.status_code == 200, response.status_code
            async for chunk in response.aiter_bytes():
                size += len(chunk)
    done.set()
    await watcher
    return {"seconds": round(time.monotonic() - began, 2), "bytes": size, "rss_before_mb": round(before, 1),
            "rss_growth_mb": round(max(peak, rss_mb(pid)) - before, 1)}  # fmt: skip


async def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="evedge-bench-console-") as folder:
        directory = Path(folder)
        ocpp_port, web_port = free_port(), free_port()
        path = config(directory, ocpp_port, web_port, args.chargers)
        token = await prepare(directory, args.rows)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVEDGE_")} | {"EVEDGE_LOG_LEVEL": "warning"}
        log = open(directory / "gateway.log", "wb")  # noqa: SIM115 -- read when the gateway fails
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(path)], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=log, preexec_fn=lambda: pin(0))  # fmt: skip
        try:
            wait_for_port(web_port, "the gateway's web server")
            wait_for_port(ocpp_port, "the gateway's OCPP server")
            web, url = f"http://127.0.0.1:{web_port}", f"ws://127.0.0.1:{ocpp_port}/ocpp"
            rtts: list[float] = []
            stop, ready = asyncio.Event(), asyncio.Barrier(args.chargers + 1)
            fleet = [asyncio.create_task(charger(url, n, args.interval, rtts, stop, ready)) for n in range(args.chargers)]
            await asyncio.wait_for(ready.wait(), 120)
            await asyncio.sleep(min(args.interval, 10))  # every charger has sent once
            client = await logged_in(web)
            weight = await first_load(client)
            await client.aclose()
            phases = [await phase("no console", web, process.pid, rtts, args.seconds, 0),
                      await phase(f"{args.streams} live pages", web, process.pid, rtts, args.seconds, args.streams),
                      await phase("no console again", web, process.pid, rtts, args.seconds, 0)]  # fmt: skip
            stop.set()
            for task in fleet:
                task.cancel()
            await asyncio.gather(*fleet, return_exceptions=True)
            exports = {kind: await export(web, token, process.pid, kind) for kind in ("xlsx", "csv")}
        except BaseException:
            sys.stderr.write((directory / "gateway.log").read_text()[-4000:])
            raise
        finally:
            process.terminate()
            process.wait(30)
            log.close()
    quiet = (phases[0]["cpu_share"] + phases[2]["cpu_share"]) / 2
    per_stream = (phases[1]["cpu_share"] - quiet) / args.streams
    return {"phases": phases, "cpu_per_stream": round(per_stream, 5), "first_load_bytes": sum(weight.values()),
            "first_load": weight, "exports": exports}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a charger's MeterValues")
    parser.add_argument("--streams", type=int, default=10, help="live pages open at once")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--rows", type=int, default=100_000, help="past sessions to export")
    args = parser.parse_args()
    pin(1)  # the chargers and the browsers on the other core than the gateway
    result = asyncio.run(run(args))
    print(f"console: {args.chargers} chargers, a MeterValues every {args.interval:g} s each; gateway pinned to one core")
    print(f"{'':22} {'RTT p50 ms':>10} {'RTT p99 ms':>10} {'lag p99 ms':>10} {'lag max ms':>10} {'core used':>9} "
          f"{'msg/s/stream':>12} {'B/s/stream':>10}")  # fmt: skip
    for p in result["phases"]:
        print(f"{p['phase']:22} {p['rtt_p50_ms']!s:>10} {p['rtt_p99_ms']!s:>10} {p['lag_p99_ms']!s:>10} "
              f"{p['lag_max_ms']!s:>10} {p['cpu_share']:9.2%} {p['stream_msgs_per_s']:12} {p['stream_bytes_per_s']:10}")
    print(f"CPU per open live page: {result['cpu_per_stream']:.3%} of a core")
    print(f"first load of the overview (gzip): {result['first_load_bytes'] / 1024:.1f} KiB -- "
          + ", ".join(f"{name} {size / 1024:.1f}" for name, size in result["first_load"].items()))
    for kind, e in result["exports"].items():
        print(f"export of {args.rows} sessions as {kind}: {e['seconds']} s, {e['bytes'] / 1e6:.1f} MB, gateway RSS "
              f"{e['rss_before_mb']} MB + {e['rss_growth_mb']} MB")
    print(json.dumps({"bench": "console", "chargers": args.chargers, "interval": args.interval,
                      "streams": args.streams, "seconds": args.seconds, "rows": args.rows, **result}))  # fmt: skip


if __name__ == "__main__":
    main()
