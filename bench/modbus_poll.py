"""Modbus polling: CPU per 1000 block reads through the driver, against a bare pymodbus loop, in one run.

A simulated Eastron SDM630 (its 13 values in 3 blocks) is served by a separate process on the other core.
Then, one after the other, pinned to one core:
- bare: an AsyncModbusTcpClient reading the same three blocks in a loop, nothing else;
- driver: evedge's Modbus driver polling the meter flat out (poll_s close to 0): bus layer, block planning,
  decoding, process image, staleness bookkeeping.
Each runs for the same time; its process's CPU time is read from the kernel.

    .venv/bin/python bench/modbus_poll.py [--seconds 10]

The last line is JSON, for comparing runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from measure import cpu_s, free_port, pin, wait_for_port  # noqa: E402 -- bench/, beside this script

SDM630 = "eastron-sdm630"
VALUES = {"power_w": 48000.0, "power_w_l1": 16000.0, "power_w_l2": 16000.0, "power_w_l3": 16000.0,
          "current_a_l1": 69.5, "current_a_l2": 69.6, "current_a_l3": 69.4, "voltage_v_l1": 230.0,
          "voltage_v_l2": 230.5, "voltage_v_l3": 229.5, "energy_import_wh": 12_345_678.0,
          "energy_export_wh": 0.0, "frequency_hz": 50.0}  # fmt: skip


async def serve(port: int) -> None:
    from drivers.modbus.registers import load_profile
    from gateway.sim.meter import SimMeter, SimModbusServer

    sdm = load_profile(SDM630)
    words = sdm.words(VALUES)
    await SimModbusServer([SimMeter(1, lambda: words, sdm.spans())]).serve_tcp("127.0.0.1", port)


async def bare(port: int, seconds: float) -> dict:
    from pymodbus.client import AsyncModbusTcpClient

    from drivers.modbus.registers import load_profile

    blocks = load_profile(SDM630).blocks
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    reads, start_cpu, deadline = 0, cpu_s(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        for block in blocks:
            answer = await client.read_input_registers(block.start, count=block.count, device_id=1)
            assert not answer.isError()
            reads += 1
    client.close()
    return {"reads": reads, "cpu_s": cpu_s() - start_cpu, "seconds": seconds}


async def driver(port: int, seconds: float) -> dict:
    from drivers.modbus import ModbusDriver
    from gateway.points import ProcessImage
    from gateway.settings import ModbusTcpMeter

    meter = ModbusTcpMeter(id="grid", driver="modbus", host="127.0.0.1", port=port, profile=SDM630, poll_s=1e-6,
                           stale_after_s=5.0, timeout_s=2.0)  # fmt: skip
    image = ProcessImage()
    polling = ModbusDriver([meter], image)
    start_cpu = cpu_s()
    task = asyncio.create_task(polling.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert image.value("meters/grid/power_w") == VALUES["power_w"]
    reads = sum(m.reads for p in polling.pollers for m in p.meters)
    return {"reads": reads, "cpu_s": cpu_s() - start_cpu, "seconds": seconds}




def worker(kind: str, port: int, seconds: float) -> None:
    pin(0 if kind != "server" else 1)
    if kind == "server":
        asyncio.run(serve(port))
    else:
        print(json.dumps(asyncio.run((bare if kind == "bare" else driver)(port, seconds))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--worker", choices=["server", "bare", "driver"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.port, args.seconds)
        return

    port = free_port()
    me = [sys.executable, __file__, "--port", str(port), "--seconds", str(args.seconds)]
    server = subprocess.Popen([*me, "--worker", "server"], cwd=ROOT)
    try:
        wait_for_port(port, "the simulated meter")
        results = {kind: json.loads(subprocess.run([*me, "--worker", kind], cwd=ROOT, check=True,
                                                   capture_output=True, text=True).stdout)
                   for kind in ("bare", "driver")}  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
    for r in results.values():
        r["reads_per_s"] = r["reads"] / r["seconds"]
        r["cpu_s_per_1000"] = 1000 * r["cpu_s"] / r["reads"]
    ratio = results["driver"]["cpu_s_per_1000"] / results["bare"]["cpu_s_per_1000"]
    print(f"Modbus TCP block reads of an {SDM630} (3 blocks a poll), {args.seconds:g} s each, pinned to one core")
    print(f"{'':8} {'reads/s':>9} {'CPU s/1000 reads':>17}")
    for kind, r in results.items():
        print(f"{kind:8} {r['reads_per_s']:9.0f} {r['cpu_s_per_1000']:17.3f}")
    print(f"driver / bare pymodbus: {ratio:.2f}x the CPU per block read")
    print(json.dumps({"bench": "modbus_poll", "seconds": args.seconds, **results, "cpu_ratio": ratio}))


if __name__ == "__main__":
    main()
