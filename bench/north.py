"""The north side: CPU per 1000 point updates through MQTT and OPC UA, outbox commit and replay rates, RSS.

A site of 200 chargers x 2 EVSEs x 8 values (3,200 points, plus each charger's online flag) changes every
value once a second. Each scenario runs in a process of its own, pinned to one core (Mosquitto on the
other), for the same time; its CPU time is read from the kernel:
- none: the process image alone, nobody reading it (the baseline: what the updates themselves cost);
- mqtt: the MQTT bridge and the outbox (retained state every state_interval_s, telemetry batches into
  SQLite, delivered to Mosquitto at QoS 1);
- opcua: the OPC UA server with 200 chargers' nodes, a client (another process, on the other core)
  subscribed to every EVSE's power;
- both.
Net cost per 1000 updates = (scenario - none) / updates x 1000.

The outbox: commit rate of telemetry messages written one by one (each its own fsync) and together (group
commit), and the replay rate of a backlog through the MQTT bridge to Mosquitto beside a bare aiomqtt
publisher sending the same messages at QoS 1 with the same window (baseline).

    .venv/bin/python bench/north.py [--seconds 15] [--backlog 20000]

The last line is JSON, for comparing runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from measure import cpu_s, free_port, pin, wait_for_port  # noqa: E402 -- bench/, beside this script

CHARGERS, EVSES = 200, 2
SHELF = Path(tempfile.gettempdir()) / "evedge-bench-shelf" / "opcua"  # the OPC UA standard nodes, made once
LEAVES = ("power_w", "current_a", "current_a_l1", "current_a_l2", "current_a_l3", "energy_wh", "soc",
          "session_energy_wh")  # fmt: skip


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def config(directory: Path, broker_port: int | None, opcua_port: int | None) -> Path:
    chargers = "".join(f'\n[[chargers]]\nid = "CP{n:03d}"\npassword = "bench-password-{n:06d}"\nevses = {EVSES}\n'
                       for n in range(CHARGERS))  # fmt: skip
    text = f'[gateway]\nid = "bench"\nstate_dir = "{directory}"\n[loadcap]\nenabled = false\n' + chargers
    if broker_port:
        text += f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
    if opcua_port:
        text += f'\n[opcua]\nlisten = "127.0.0.1:{opcua_port}"\nallow_none = true\nallow_anonymous = true\n'
    path = directory / "evedge.toml"
    path.write_text(text)
    return path


# -- one scenario, in its own process ---------------------------------------------------------------------


async def updates(consumer: str, broker_port: int, seconds: float, keep_shelf: bool = False) -> dict:
    from gateway.auth import Role  # noqa: F401 -- the same imports as the gateway, whatever the scenario
    from gateway.commands import Commands
    from gateway.model import Site
    from gateway.points import ProcessImage, charger_point, evse_point
    from gateway.settings import load_settings
    from gateway.store import Store

    directory = Path(tempfile.mkdtemp(prefix="evedge-bench-"))
    opcua_port = free_port() if consumer in ("opcua", "both") else None
    if opcua_port and SHELF.is_dir():  # a later start, as on a site: the standard nodes from the shelf
        shutil.copytree(SHELF, directory / "opcua")
    settings = load_settings(config(directory, broker_port if consumer in ("mqtt", "both") else None, opcua_port),
                             environ={})  # fmt: skip
    site, image = Site.from_settings(settings), ProcessImage()
    store = await Store(directory).open()
    commands = Commands(store.audit)
    parts = []
    if settings.mqtt:
        from bridges.mqtt import MqttBridge
        from bridges.outbox import Outbox

        store.outbox.enabled = True
        parts += [Outbox(settings, image, store, settings.mqtt.telemetry_interval_s),
                  MqttBridge(settings, image, store, commands)]  # fmt: skip
    if settings.opcua:
        from bridges.opcua_server import OpcuaServer

        parts.append(OpcuaServer(settings, site, image, commands, store))
    for c in range(CHARGERS):
        image.set(charger_point(f"CP{c:03d}", "online"), True)
    tasks = [asyncio.create_task(p.run()) for p in parts]
    subscriber = None
    if opcua_port:  # a SCADA watching every EVSE's power, in a process of its own on the other core
        subscriber = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--seconds", str(seconds + 6), "--child", "subscriber", str(opcua_port),
            stdout=asyncio.subprocess.PIPE, preexec_fn=lambda: pin(1))  # fmt: skip
    while not all(p.health().get("status") == "ok" for p in parts):  # connected, nodes made
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)  # subscribed, first states out

    names = [evse_point(f"CP{c:03d}", e, leaf) for c in range(CHARGERS) for e in range(1, EVSES + 1) for leaf in LEAVES]
    loop = asyncio.get_running_loop()
    began_cpu, began = cpu_s(), loop.time()
    count, tick = 0, 0
    while loop.time() - began < seconds:
        tick += 1
        for i, name in enumerate(names):
            image.set(name, float(tick * 10 + i % 7))
        count += len(names)
        await asyncio.sleep(max(0.0, began + tick - loop.time()))
    cpu = cpu_s() - began_cpu
    result = {"consumer": consumer, "updates": count, "cpu_s": round(cpu, 3), "rss_mb": round(rss_mb(), 1),
              "points": len(image)}  # fmt: skip
    if subscriber is not None:
        out, _ = await subscriber.communicate()
        result["opcua_notifications"] = json.loads(out.decode().strip().splitlines()[-1])["notifications"]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()
    if keep_shelf:
        for made in (directory / "opcua").glob("aspace-*"):
            shutil.copytree(made, SHELF / made.name, dirs_exist_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
    return result


async def opcua_subscriber(port: int, seconds: float) -> dict:
    from asyncua import Client

    client = Client(f"opc.tcp://127.0.0.1:{port}/evedge", timeout=30)
    for _ in range(100):
        try:
            await client.connect()
            break
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.1)
    ns = await client.get_namespace_index("urn:evedge:bench")
    seen = [0]

    class Handler:
        def datachange_notification(self, node, val, data) -> None:
            seen[0] += 1

    subscription = await client.create_subscription(500, Handler())
    nodes = [client.get_node(f"ns={ns};s=Site.Chargers.CP{c:03d}.Evse.{e}.PowerW")
             for c in range(CHARGERS) for e in range(1, EVSES + 1)]  # fmt: skip
    await subscription.subscribe_data_change(nodes)
    await asyncio.sleep(seconds)
    await client.disconnect()
    return {"notifications": seen[0]}


async def outbox_rates(broker_port: int, backlog: int) -> dict:
    import aiomqtt

    from bridges.mqtt import MqttBridge
    from gateway.commands import Commands
    from gateway.points import ProcessImage
    from gateway.settings import load_settings
    from gateway.store import Store
    from gateway.store.outbox import TELEMETRY

    directory = Path(tempfile.mkdtemp(prefix="evedge-bench-"))
    settings = load_settings(config(directory, broker_port, None), environ={})
    store = await Store(directory).open()
    store.outbox.enabled = True
    payload = {"points": {f"chargers/CP{n:03d}/evse/1/power_w": [7400.0, "2026-11-22T10:00:00.000Z", "good"]
                          for n in range(12)}}  # ~1 KiB, a typical batch  # fmt: skip
    n_single = 500
    began = time.perf_counter()
    for _ in range(n_single):
        await store.outbox.append(TELEMETRY, "telemetry", payload)
    single = n_single / (time.perf_counter() - began)
    began = time.perf_counter()
    for _ in range(backlog // 250):
        await asyncio.gather(*(store.outbox.append(TELEMETRY, "telemetry", payload) for _ in range(250)))
    grouped = (backlog // 250 * 250) / (time.perf_counter() - began)

    queued = (await store.outbox.totals()).messages
    bridge = MqttBridge(settings, ProcessImage(), store, Commands(store.audit))
    began_cpu, began = cpu_s(), time.perf_counter()
    task = asyncio.create_task(bridge.run())
    while (await store.outbox.totals()).messages > 0:
        await asyncio.sleep(0.05)
    replay_s, replay_cpu = time.perf_counter() - began, cpu_s() - began_cpu
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    messages = await _backlog_like(store, queued, payload)
    began_cpu, began = cpu_s(), time.perf_counter()
    async with aiomqtt.Client("127.0.0.1", broker_port, max_inflight_messages=settings.mqtt.max_inflight + 10) as c:
        window = asyncio.Semaphore(settings.mqtt.max_inflight)

        async def send(body: bytes) -> None:
            try:
                await c.publish("bench/telemetry", body, qos=1, timeout=math.inf)
            finally:
                window.release()

        sends = []
        for body in messages:
            await window.acquire()
            sends.append(asyncio.create_task(send(body)))
        await asyncio.gather(*sends)
    bare_s, bare_cpu = time.perf_counter() - began, cpu_s() - began_cpu
    await store.close()
    shutil.rmtree(directory, ignore_errors=True)
    return {"commit_single_rows_s": round(single), "commit_grouped_rows_s": round(grouped), "backlog": queued,
            "replay_rows_s": round(queued / replay_s), "replay_cpu_ms_per_row": round(replay_cpu / queued * 1000, 3),
            "bare_mqtt_rows_s": round(len(messages) / bare_s),
            "bare_cpu_ms_per_row": round(bare_cpu / len(messages) * 1000, 3)}  # fmt: skip


async def _backlog_like(store, count: int, payload: dict) -> list[bytes]:
    from gateway.store.outbox import Message, dumps

    text = dumps(payload)
    return [Message(n, "0" * 32, "2026-11-22T10:00:00.000Z", "telemetry", "telemetry", text).envelope()
            for n in range(1, count + 1)]  # fmt: skip


# -- the driver -------------------------------------------------------------------------------------------


def start_broker(directory: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: pin(1))  # fmt: skip
    wait_for_port(port, "mosquitto", timeout=5)
    return process, port


def run_child(kind: str, port: int, args: argparse.Namespace, keep_shelf: bool = False) -> dict:
    out = subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds), "--backlog", str(args.backlog),
                          "--child", kind, str(port), *(["keep-shelf"] if keep_shelf else [])],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"scenario {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        pin(1 if args.child[0] == "subscriber" else 0)
        kind, port = args.child[0], int(args.child[1])
        if kind == "outbox":
            coro = outbox_rates(port, args.backlog)
        elif kind == "subscriber":
            coro = opcua_subscriber(port, args.seconds)
        else:
            coro = updates(kind, port, args.seconds, keep_shelf="keep-shelf" in args.child)
        print(json.dumps(asyncio.run(coro)))
        return

    directory = Path(tempfile.mkdtemp(prefix="evedge-bench-broker-"))
    broker, port = start_broker(directory)
    try:
        if not SHELF.is_dir():  # a first start makes it; the scenarios then start as a gateway does every day
            run_child("opcua", port, argparse.Namespace(seconds=1.0, backlog=args.backlog), keep_shelf=True)
        runs = {kind: run_child(kind, port, args) for kind in ("none", "mqtt", "opcua", "both")}
        rates = run_child("outbox", port, args)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(directory, ignore_errors=True)

    base = runs["none"]
    print(f"{CHARGERS} chargers x {EVSES} EVSEs x {len(LEAVES)} values, every value once a second, "
          f"{args.seconds:g} s per scenario, one core")
    print(f"{'scenario':<8} {'updates':>8} {'CPU s':>7} {'% core':>7} {'net ms/1000 upd':>16} {'RSS MB':>7}")
    figures = {}
    for kind, r in runs.items():
        net = (r["cpu_s"] - base["cpu_s"]) / r["updates"] * 1e6 if kind != "none" else 0.0
        figures[kind] = {**r, "net_ms_per_1000_updates": round(net, 2),
                         "core_pct": round(r["cpu_s"] / args.seconds * 100, 1)}  # fmt: skip
        print(f"{kind:<8} {r['updates']:>8} {r['cpu_s']:>7.2f} {r['cpu_s'] / args.seconds * 100:>6.1f}% "
              f"{net:>16.2f} {r['rss_mb']:>7.1f}")
    print(f"outbox commits: {rates['commit_single_rows_s']} rows/s one by one (an fsync each), "
          f"{rates['commit_grouped_rows_s']} rows/s together (group commit)")
    print(f"replay of {rates['backlog']} messages: bridge {rates['replay_rows_s']} rows/s "
          f"({rates['replay_cpu_ms_per_row']} ms CPU/row) vs bare aiomqtt {rates['bare_mqtt_rows_s']} msg/s "
          f"({rates['bare_cpu_ms_per_row']} ms CPU/msg)")
    print(json.dumps({"bench": "north", "seconds": args.seconds, "scenarios": figures, "outbox": rates}))


if __name__ == "__main__":
    main()
