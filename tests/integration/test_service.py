"""The appliance side: the systemd unit is valid, and the daemon speaks systemd's notify protocol."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys

from tests.conftest import ROOT, eventually, free_port, write_config


def test_the_unit_file_is_valid(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze comes with Debian's systemd package (tools/debian-packages)"
    unit = (ROOT / "systemd/evedge.service").read_text()
    unit = unit.replace("/opt/evedge/.venv/bin/evedge", str(ROOT / ".venv/bin/evedge"))
    (tmp_path / "evedge.service").write_text(unit)
    result = subprocess.run([analyze, "verify", str(tmp_path / "evedge.service")], capture_output=True, text=True)
    problems = [line for line in result.stderr.splitlines() if "evedge.service" in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_the_install_script_is_sound_bash():
    assert subprocess.run(["bash", "-n", str(ROOT / "systemd/install.sh")]).returncode == 0


async def test_ready_watchdog_and_stopping_are_notified(tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.setblocking(False)
    received: list[str] = []
    loop = asyncio.get_running_loop()
    loop.add_reader(server.fileno(), lambda: received.append(server.recv(4096).decode()))
    config = write_config(tmp_path, ocpp_port=free_port(), web_port=free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVEDGE_")}
    env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}  # a ping every 0.1 s
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", "run", "-c", str(config),
                                                   cwd=ROOT, env=env, stderr=asyncio.subprocess.DEVNULL)  # fmt: skip
    try:
        await eventually(lambda: "READY=1" in received, timeout=20)
        ready_at = received.index("READY=1")
        await eventually(lambda: received[ready_at:].count("WATCHDOG=1") >= 5, timeout=10)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        await eventually(lambda: "STOPPING=1" in received, timeout=5)
    finally:
        loop.remove_reader(server.fileno())
        server.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
