"""Fixtures: real peers on free loopback ports, started per test and stopped after it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import App
from gateway.auth import Role
from gateway.settings import Settings, load_settings
from gateway.sim.charger import SimCharger, SimSpec
from gateway.sim.site import make_charger

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {"CP16": "password-of-CP16", "CP201": "password-of-CP201", "CPBB": "password-of-CPBB"}

BASE_CONFIG = """
[gateway]
id = "test"
state_dir = "{state_dir}"

[ocpp]
listen = "127.0.0.1:{ocpp_port}"
call_timeout_s = {call_timeout_s}
heartbeat_interval_s = 60
tls_listen = "127.0.0.1:0"

[web]
listen = "127.0.0.1:{web_port}"

[site]
limit_w = {site_limit_w}
{site}

[[chargers]]
id = "CP16"
password = "password-of-CP16"
evses = 2

[[chargers]]
id = "CP201"
password = "password-of-CP201"

[[chargers]]
id = "CPBB"
password = "password-of-CPBB"
"""

# What every door (API, MQTT, OPC UA, CLI) answers to a site limit of -5 W: the command's own refusal.
REFUSED_MINUS_5 = "limit_w must be a number of W from 0 to 1000000000, or null to lift it, not -5"

# The site's grid meter: a simulated SDM630 on loopback (`port` to fill in), polled fast, stale soon.
GRID_METER = """
[[meters]]
id = "grid"
driver = "modbus"
host = "127.0.0.1"
port = {port}
unit = 1
profile = "eastron-sdm630"
poll_s = 0.1
stale_after_s = 0.8
timeout_s = 0.3
max_backoff_s = 0.4
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, extra: str = "", call_timeout_s: float = 5.0, ocpp_port: int = 0,
                 web_port: int = 0, loadcap: bool = False, site_limit_w: float = 100000,
                 site: str = "", unknown_badges: str | None = "accept") -> Path:  # fmt: skip
    """The base site (`site`: more lines of its [site] table) plus `extra`. The load cap stays off unless asked
    for (its own [loadcap] may be in `extra`): it talks to every charger at connect, which tests of other parts
    would hear. The simulated EVs come with random badges, so badges on no list are accepted unless a test of
    authorization says otherwise (None: the shipped default, reject)."""
    path = directory / "evedge.toml"
    path.write_text(
        BASE_CONFIG.format(state_dir=directory / "state", ocpp_port=ocpp_port, web_port=web_port,
                           call_timeout_s=call_timeout_s, site_limit_w=site_limit_w, site=textwrap.dedent(site))
        + ("" if loadcap else "\n[loadcap]\nenabled = false\n")
        + (f'\n[authorization]\nunknown_badges = "{unknown_badges}"\n' if unknown_badges else "")
        + textwrap.dedent(extra)
    )
    return path


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Wait until check() (sync or async) returns something truthy; fail with the last value after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)


class Gateway:
    """An in-process gateway on free ports, with helpers to reach it."""

    def __init__(self, app: App, admin_token: str) -> None:
        self.app = app
        self.admin_token = admin_token

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.app.ocpp.port}/ocpp"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.app.web.port}"

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"} if token != "" else {}
        return httpx.AsyncClient(base_url=self.web_url, headers=headers, timeout=30)

    async def token(self, role: Role) -> str:
        return await self.app.store.accounts.create_token(role, f"test-{role.name}")

    def charger(self, charger_id: str, version: str, password: str | None = None, **spec: Any) -> SimCharger:
        password = PASSWORDS.get(charger_id) if password is None else password
        return make_charger(SimSpec(charger_id, version, self.ocpp_url, password, **spec),
                            reconnect_min_s=0.05, reconnect_max_s=0.5)  # fmt: skip


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with _running_gateway(settings) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
async def _stuck_tasks_shown() -> AsyncIterator[None]:
    """faulthandler (pyproject) shows threads only: a test stuck on an await shows every task's stack first (in
    its report if it ends; run with -s to see it when faulthandler ends the run)."""
    dump = asyncio.get_running_loop().call_later(STUCK_S, _dump_tasks)
    yield
    dump.cancel()


STUCK_S = 100.0  # under faulthandler_timeout


def _dump_tasks() -> None:
    print(f"\n-- a test has run {STUCK_S:g} s: every task and what it awaits, innermost last --", file=sys.stderr)
    for task in asyncio.all_tasks():
        print(f"{task.get_name()}{' (cancelling)' if task.cancelling() else ''}:", file=sys.stderr)
        awaiting: Any = task.get_coro()
        while awaiting is not None:  # Task.print_stack shows the outermost frame only; follow the await chain
            frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "ag_frame", None) \
                or getattr(awaiting, "gi_frame", None)  # fmt: skip
            if frame is None:
                print(f"    {awaiting!r:.200}", file=sys.stderr)
                break
            print(f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}", file=sys.stderr)
            awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "ag_await", None) \
                or getattr(awaiting, "gi_yieldfrom", None)  # fmt: skip


@contextlib.asynccontextmanager
async def _running_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    app = App(settings)
    task = asyncio.create_task(app.run())
    started = asyncio.create_task(app.started.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()  # raises what stopped it
    try:
        yield Gateway(app, await app.store.accounts.create_token(Role.admin, "test-admin"))
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = load_settings(write_config(tmp_path), environ={})
    async with running_gateway(settings) as gw:
        yield gw


@contextlib.asynccontextmanager
async def in_background(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    """Run a part (a driver, a server) while the block runs; cancel it and wait for it after."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def connected(*chargers: SimCharger) -> AsyncIterator[None]:
    """Run simulated chargers until the block ends; enter once every one is connected and booted."""
    tasks = [asyncio.create_task(c.run()) for c in chargers]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in chargers)), 15)
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the gateway as a separate process (kill -9, CLI) --------------------------------------------------------


class GatewayProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVEDGE_")}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "-c", str(self.config)], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait(10)
        return self.process.returncode


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def make(config: Path) -> GatewayProcess:
        gp = GatewayProcess(config, tmp_path / "gateway.log")
        started.append(gp)
        return gp

    yield make
    for gp in started:
        if gp.process is not None and gp.process.poll() is None:
            gp.process.kill()
            gp.process.wait(10)


async def wait_http(url: str, timeout: float = 20.0) -> None:
    async def up() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(up, timeout, 0.1)



# -- a real MQTT broker -----------------------------------------------------------------------------------------


class Broker:
    """Mosquitto on a free loopback port, with persistence (a restart keeps sessions and queued messages)."""

    def __init__(self, directory: Path, listener: str = "allow_anonymous true") -> None:
        """listener: the lines of the listener's own settings (TLS files, a password file)."""
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(f"per_listener_settings true\nlistener {self.port} 127.0.0.1\n{listener}\n"
                               + textwrap.dedent(f"""\
            # as root mosquitto would become "mosquitto", who cannot enter pytest's 0700 folders
            user root
            persistence true
            persistence_location {directory}/
            autosave_interval 1
            log_dest file {directory}/mosquitto.log
            """))
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            pytest.fail("mosquitto is not installed: `make test` installs it (tools/debian-packages)")
        self.process = subprocess.Popen([binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip

        async def listening() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            return True

        await eventually(listening, timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # it saves its persistence file on the way out
            self.process.wait(10)
        self.process = None


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    b = Broker(tmp_path / "broker")
    await b.start()
    yield b
    b.stop()
