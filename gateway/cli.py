"""The `evedge` command: run, demo, check-config, send, token, user, passwd, export, sim."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import getpass
import json
import logging
import os
import shutil
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from gateway.auth import Role, hash_password
from gateway.clock import parse_iso
from gateway.commands import CommandError, SetSiteLimit
from gateway.i18n import DEFAULT_LANGUAGE, LANGUAGES, Formats
from gateway.logs import setup_logging
from gateway.settings import ConfigError, Settings, config_path, load_settings, split_listen
from gateway.store import Store

if TYPE_CHECKING:
    from gateway.sim.certificates import SimTls

log = logging.getLogger("evedge")

DEMO_CONFIG = Path("etc/demo.toml")
CHARGER_PASSWORD = (16, 40)  # OCPP security profile 1
USER_PASSWORD = (8, 256)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"evedge: the configuration cannot be used ({e.source}):", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evedge", description="On-site gateway for EV-charging sites.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def config_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", type=Path, help="config file (default: $EVEDGE_CONFIG or etc/evedge.toml)")

    config_option(command("run", _run, "Run the gateway."))
    config_option(command("check-config", _check_config, "Check a config file; print every problem."))

    demo = command("demo", _demo, "Run the gateway on a simulated site; print the URLs and an admin token.")
    demo.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG, help=f"demo config (default {DEMO_CONFIG})")
    demo.add_argument("--state-dir", type=Path, help="where the demo keeps its database (default: from the config)")
    demo.add_argument("--ocpp-port", type=int, help="OCPP port (default: from the config)")
    demo.add_argument("--web-port", type=int, help="web port (default: from the config)")
    demo.add_argument("--meter-port", type=int, help="the simulated grid meter's Modbus port (default: from the config)")
    demo.add_argument("--mqtt-port", type=int, help="the MQTT broker's port (default: from the config)")
    demo.add_argument("--opcua-port", type=int, help="the OPC UA server's port (default: from the config)")

    send = command("send", _send, "Send one OCPP request to a charger through the running gateway.")
    config_option(send)
    send.add_argument("charger", help="charge point id")
    send.add_argument("action", help="OCPP action, e.g. GetConfiguration")
    send.add_argument("payload", nargs="?", default="{}", help="JSON payload (default {})")
    send.add_argument("--url", help="gateway web URL (default: from the config's web.listen)")
    send.add_argument("--token", help="API token (default: $EVEDGE_TOKEN, else a one-minute token from the store)")

    limit = command("site-limit", _site_limit, "Set (or lift) an external limit on the site's import through the "
                    "running gateway; the strictest of all limits holds.")
    config_option(limit)
    limit.add_argument("limit", metavar="LIMIT_W", help='the limit in W, or "lift"')
    limit.add_argument("--source", default="operator", help="who sets it: each source's limit is kept apart "
                       "(default operator)")
    limit.add_argument("--valid-s", type=float, help="it lapses unless set again within this many seconds")
    limit.add_argument("--url", help="gateway web URL (default: from the config's web.listen)")
    limit.add_argument("--token", help="API token (default: $EVEDGE_TOKEN, else a one-minute token from the store)")

    token = command("token", lambda a: 2, "API tokens.")
    token_sub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="Create a bearer token; it is printed once.")
    create.set_defaults(func=_token_create)
    config_option(create)
    create.add_argument("--role", required=True, choices=[r.name for r in Role])
    create.add_argument("--label", help="who or what the token is for (shown in the audit log)")
    create.add_argument("--days", type=int, help="expire after this many days (default: never)")

    user = command("user", lambda a: 2, "Console users.")
    user_sub = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = user_sub.add_parser("add", help="Add a user (or change one's password and role).")
    add.set_defaults(func=_user_add)
    config_option(add)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.name for r in Role])
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    export = command("export", lambda a: 2, "History as files.")
    export_sub = export.add_subparsers(dest="what", required=True, metavar="WHAT")
    sessions = export_sub.add_parser("transactions", help="Charging sessions as CSV or Excel (.xlsx), from the store "
                                     "(the gateway may be running).")  # fmt: skip
    sessions.set_defaults(func=_export_transactions)
    config_option(sessions)
    sessions.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    sessions.add_argument("-o", "--output", type=Path, help="file to write (default: standard output for csv, "
                          "transactions.xlsx for xlsx)")  # fmt: skip
    sessions.add_argument("--since", type=parse_iso, help="sessions started from this time on (ISO 8601, UTC unless "
                          "it has a zone)")  # fmt: skip
    sessions.add_argument("--until", type=parse_iso, help="sessions started before this time")
    sessions.add_argument("--charger", help="one charger's sessions")
    sessions.add_argument("--id-tag", help="one badge's sessions")
    sessions.add_argument("--stop-reason", help="sessions that ended for this reason (Local, Remote, EVDisconnected, ...)")
    sessions.add_argument("--lang", choices=sorted(LANGUAGES), help="headers in this language and times in the site's "
                          "zone (xlsx: always, English by default); a csv without it is for machines: field names, "
                          "UTC")  # fmt: skip

    passwd = command("passwd", _passwd, "Hash a password for chargers.*.password_hash.")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    sim = command("sim", _sim, "Simulated chargers (1.6 and 2.0.1) that connect to a gateway and charge EVs.")
    config_option(sim)
    sim.add_argument("--url", help="OCPP URL without the id (default: from the config -- wss:// under security "
                                   "profile 2/3 -- else ws://127.0.0.1:9000/ocpp)")  # fmt: skip
    sim.add_argument("--ca", type=Path, help="CA certificate (PEM) to trust for a wss:// URL (default: the site CA "
                                             "in the config's state_dir/pki/ca.pem)")  # fmt: skip
    sim.add_argument("--cert", type=Path, help="client certificate chain (PEM, CN = charge point id) for profile 3")
    sim.add_argument("--key", type=Path, help="its private key (PEM)")
    sim.add_argument("--chargers", type=int, help="how many (default: every charger of the config with a password)")
    sim.add_argument("--version", choices=["1.6", "2.0.1", "mixed"], default="mixed")
    sim.add_argument("--password", help="password for every simulated charger")
    sim.add_argument("--prefix", default="SIM", help="id prefix when not taken from the config (SIM01, ...)")
    sim.add_argument("--meter-interval", type=float, default=10.0, help="seconds between meter values")
    sim.add_argument("--meter-port", type=int, default=5020,
                     help="Modbus TCP port of a simulated SDM630 grid meter on 127.0.0.1 (0: none)")

    probe = command("probe", lambda a: 2, "Read a device once and print what it says (commissioning).")
    probe_sub = probe.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    modbus = probe_sub.add_parser("modbus", help="A Modbus TCP or RTU meter, with a profile.")
    modbus.set_defaults(func=_probe_modbus)
    modbus.add_argument("--profile", required=True, help="register map from drivers/profiles, e.g. eastron-sdm630")
    modbus.add_argument("--host", help="Modbus TCP: the meter's (or gateway's) address")
    modbus.add_argument("--port", type=int, default=502, help="Modbus TCP port (default 502)")
    modbus.add_argument("--rtu", metavar="DEVICE", help="Modbus RTU: the serial port, e.g. /dev/ttyUSB0")
    modbus.add_argument("--baud", type=int, default=9600, help="RTU: bits per second (default 9600)")
    modbus.add_argument("--parity", choices=["N", "E", "O"], default="N", help="RTU: parity (default N)")
    modbus.add_argument("--stopbits", type=int, choices=[1, 2], default=1, help="RTU: stop bits (default 1)")
    modbus.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    modbus.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer (default 2)")
    return parser


# -- run, check-config ------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    return _serve(_checked_settings(args.config))


def _check_config(args: argparse.Namespace) -> int:
    settings = _checked_settings(args.config)
    print(f"{config_path(args.config)}: OK ({len(settings.chargers)} chargers, {len(settings.groups)} groups, "
          f"{len(settings.meters)} meters)")  # fmt: skip
    return 0


def _checked_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings, checked by the core and by every part that has something to say about them."""
    from gateway.app import config_problems

    settings = load_settings(path, environ)
    problems = config_problems(settings)
    if problems:
        raise ConfigError(problems, str(config_path(path, environ)))
    return settings


def _serve(settings: Settings, site: Any = None) -> int:
    """Run the gateway until SIGTERM/SIGINT; with a simulated site (the demo): its equipment first, its
    chargers once the gateway listens."""
    from gateway.app import App

    async def serve() -> None:
        app = App(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, app.stop)
        equipment = asyncio.create_task(site.equipment()) if site else None
        if site:
            await site.ready.wait()
        running = asyncio.create_task(app.run())
        started = asyncio.create_task(app.started.wait())
        await asyncio.wait({running, started}, return_when=asyncio.FIRST_COMPLETED)
        chargers = asyncio.create_task(site.chargers(app)) if site and app.started.is_set() else None
        try:
            await running
        finally:
            started.cancel()
            for task in (chargers, equipment):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    failures: list[BaseException] = []
    try:
        asyncio.run(serve())
    except* OSError as group:  # a port taken, a state directory not writable, ...
        failures.extend(group.exceptions)
    for error in failures:
        hint = ""
        if getattr(error, "errno", None) == errno.EADDRINUSE:
            hint = " (another program listens there: change ocpp.listen / web.listen, or stop it)"
        print(f"evedge: cannot start: {error}{hint}", file=sys.stderr)
    return 1 if failures else 0


# -- demo ------------------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    overrides: dict[str, str] = {}
    if args.state_dir:
        overrides["EVEDGE_GATEWAY__STATE_DIR"] = str(args.state_dir)
    if args.ocpp_port is not None:
        overrides["EVEDGE_OCPP__LISTEN"] = f"127.0.0.1:{args.ocpp_port}"
    if args.web_port is not None:
        overrides["EVEDGE_WEB__LISTEN"] = f"127.0.0.1:{args.web_port}"
    if args.meter_port is not None:
        overrides["EVEDGE_METERS__GRID__PORT"] = str(args.meter_port)
    if args.mqtt_port is not None:
        overrides["EVEDGE_MQTT__PORT"] = str(args.mqtt_port)
    if args.opcua_port is not None:
        overrides["EVEDGE_OPCUA__LISTEN"] = f"127.0.0.1:{args.opcua_port}"
    settings = _checked_settings(args.config, {**os.environ, **overrides})
    return _serve(settings, _DemoSite(settings))


class _DemoSite:
    """The simulated site of the demo: a grid meter (up before the gateway polls it) and chargers of both
    versions (connecting once the gateway listens)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.grid = settings.meter(settings.site.grid_meter or "")
        self.ready = asyncio.Event()
        self.fleet: list[Any] = []  # the simulated chargers, once they exist

    async def equipment(self) -> None:
        mqtt = self.settings.mqtt
        broker = await _start_broker(mqtt.host, mqtt.port, self.settings.gateway.state_dir) if mqtt else None
        try:
            if self.grid is None:
                self.ready.set()
                await asyncio.Event().wait()
            await _serve_grid_meter(self.fleet, self.grid.host, self.grid.port, self.ready)
        finally:
            if broker is not None and broker.returncode is None:
                broker.terminate()
                await broker.wait()

    async def chargers(self, app: Any) -> None:
        from gateway.sim.charger import SimSpec
        from gateway.sim.site import make_charger, run_site

        await app.store.accounts.revoke_label("demo")  # the token of an earlier demo run
        token = await app.store.accounts.create_token(Role.admin, "demo")
        console_password = secrets.token_urlsafe(9)  # a new one each run, like the token
        await app.store.accounts.add_user("demo", console_password, Role.admin)
        web = f"http://127.0.0.1:{app.web.port}"
        ocpp = f"ws://127.0.0.1:{app.ocpp.port}/ocpp"
        specs = [
            SimSpec(c.id, "1.6" if n % 2 == 0 else "2.0.1", ocpp, c.password.get_secret_value() if c.password else None,
                    evses=c.evses, max_w=c.max_w, phases=c.phases, phase_rotation=c.phase_rotation, meter_interval_s=5.0)
            for n, c in enumerate(self.settings.chargers)
        ]  # fmt: skip
        self.fleet.extend(make_charger(spec) for spec in specs)
        print(_demo_banner(web, ocpp, token, specs, self.grid.port if self.grid else None, self.settings,
                           console_password), flush=True)  # fmt: skip
        await run_site(self.fleet)


async def _start_broker(host: str, port: int, state_dir: Path) -> asyncio.subprocess.Process | None:
    """A Mosquitto for the demo's MQTT bridge, unless a broker already listens there (or none is installed:
    the bridge then keeps trying, as it would on a site whose broker is down)."""
    if _listening(host, port):
        return None
    binary = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)
    if binary is None:
        print(f"evedge demo: no mosquitto installed and no broker on {host}:{port}; MQTT stays offline",
              file=sys.stderr)  # fmt: skip
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "mosquitto.conf"
    config.write_text(f"listener {port} {host}\nallow_anonymous true\n")
    # In a session of its own: Ctrl-C reaches the terminal's whole process group, and a broker gone at the same
    # moment cuts the gateway's goodbye short; the demo stops it once the gateway has stopped.
    process = await asyncio.create_subprocess_exec(binary, "-c", str(config), stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    for _ in range(100):
        if _listening(host, port) or process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    return process


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


async def _serve_grid_meter(chargers: list[Any], host: str, port: int, started: asyncio.Event | None = None) -> None:
    """A simulated Eastron SDM630 at the site's connection: the building's load plus the simulated EVs."""
    from drivers.modbus.registers import load_profile
    from gateway.sim.meter import GridMeterModel, SimMeter, SimModbusServer
    from gateway.sim.site import ev_power_by_phase

    sdm630 = load_profile("eastron-sdm630")
    model = GridMeterModel(lambda: ev_power_by_phase(chargers))
    meter = SimMeter(1, lambda: sdm630.words(model.values()), sdm630.spans())
    await SimModbusServer([meter]).serve_tcp(host, port, started)


def _demo_banner(web: str, ocpp: str, token: str, specs: list[Any], meter_port: int | None,
                 settings: Settings, console_password: str) -> str:  # fmt: skip
    versions = ", ".join(f"{s.id} ({s.version})" for s in specs)
    meter = f"modbus://127.0.0.1:{meter_port} unit 1 (Eastron SDM630)" if meter_port else "none"
    north = ""
    if settings.mqtt:
        mqtt = settings.mqtt
        north += f"\n  MQTT                  mqtt://{mqtt.host}:{mqtt.port} topics evedge/{settings.gateway.id}/#"
    if settings.opcua:
        host, port = split_listen(settings.opcua.listen)
        north += f"\n  OPC UA server         opc.tcp://{host}:{port}/evedge (users: evedge user add NAME --role ROLE)"
    return f"""
evedge demo is running -- Ctrl-C stops everything.

  OCPP central system   {ocpp}/{{chargePointId}}
  Simulated chargers    {versions}
  Simulated grid meter  {meter}
  Web console           {web}/  (user demo, password {console_password})
  Web and HTTP API      {web}/api/v1/health{north}
  API documentation     {web}/api/docs
  Admin token           {token}

  curl -H "Authorization: Bearer {token}" {web}/api/v1/chargers
  curl -H "Authorization: Bearer {token}" {web}/api/v1/transactions
  curl -H "Authorization: Bearer {token}" {web}/api/v1/meters
  curl -H "Authorization: Bearer {token}" -X POST {web}/api/v1/chargers/{specs[0].id if specs else "CP01"}/ocpp/GetConfiguration -d '{{}}'
"""


# -- send ------------------------------------------------------------------------------------------------


def _send(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as e:
        print(f"evedge send: the payload is not JSON: {e}", file=sys.stderr)
        return 2
    if not isinstance(payload, dict):
        print("evedge send: the payload must be a JSON object", file=sys.stderr)
        return 2
    return _through_gateway(args, "send", "POST", f"/api/v1/chargers/{args.charger}/ocpp/{args.action}", payload)


def _site_limit(args: argparse.Namespace) -> int:
    try:  # the command checks its values, as it does for every door: the same refusal as the API's
        limit = None if args.limit == "lift" else float(args.limit)
        SetSiteLimit(limit, f"api:{args.source}", args.valid_s)
    except ValueError:
        print(f'evedge site-limit: {args.limit!r} is not a number of W, nor "lift"', file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"evedge site-limit: {e.message}", file=sys.stderr)
        return 2
    body = {"limit_w": limit, "source": args.source, "valid_s": args.valid_s}
    return _through_gateway(args, "site-limit", "PUT", "/api/v1/site/limit", body)


def _through_gateway(args: argparse.Namespace, name: str, method: str, path: str, body: Any) -> int:
    """One request to the running gateway's API (with a one-minute admin token from the store unless given);
    prints its answer."""
    settings = load_settings(args.config)
    url = args.url or _local_url(settings.web.listen)
    token = args.token or os.environ.get("EVEDGE_TOKEN")
    minted = token is None
    if minted:
        token = asyncio.run(_with_store(settings, lambda store: store.accounts.create_token(
            Role.admin, f"cli:{getpass.getuser()}", ttl=timedelta(minutes=1))))  # fmt: skip
    try:
        response = httpx.request(method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"},
                                 timeout=120)  # fmt: skip
    except httpx.HTTPError as e:
        print(f"evedge {name}: cannot reach the gateway at {url}: {e}", file=sys.stderr)
        return 1
    finally:
        if minted:
            asyncio.run(_with_store(settings, lambda store: store.accounts.revoke_token(token)))
    answer = _json_or_text(response)
    out = sys.stdout if response.is_success else sys.stderr
    print(json.dumps(answer, indent=2) if not isinstance(answer, str) else answer, file=out)
    return 0 if response.is_success else 1


def _local_url(listen: str) -> str:
    host, port = split_listen(listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


# -- token, user, passwd -----------------------------------------------------------------------------------


async def _with_store(settings: Settings, action: Callable[[Store], Awaitable[Any]]) -> Any:
    async with Store(settings.gateway.state_dir) as store:
        return await action(store)


def _token_create(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    ttl = timedelta(days=args.days) if args.days else None
    token = asyncio.run(_with_store(settings, lambda s: s.accounts.create_token(Role[args.role], args.label, ttl)))
    print(token)
    print(f"(role {args.role}; shown once -- keep it somewhere safe)", file=sys.stderr)
    return 0


def _user_add(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    password = _read_password(args.password_stdin, USER_PASSWORD)
    if password is None:
        return 1
    asyncio.run(_with_store(settings, lambda s: s.accounts.add_user(args.name, password, Role[args.role])))
    print(f"user {args.name} ({args.role}) saved", file=sys.stderr)
    return 0


def _passwd(args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin, CHARGER_PASSWORD)
    if password is None:
        return 1
    print(hash_password(password))
    return 0


def _read_password(from_stdin: bool, length: tuple[int, int]) -> str | None:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return None
    if not length[0] <= len(password) <= length[1]:
        print(f"the password must be {length[0]} to {length[1]} characters long", file=sys.stderr)
        return None
    return password


# -- export ----------------------------------------------------------------------------------------------


def _export_transactions(args: argparse.Namespace) -> int:
    from gateway.export import XLSX_MAX_ROWS, csv_chunks, write_xlsx
    from gateway.store import DB_NAME
    from gateway.store.db import read_rows
    from gateway.store.transactions import EXPORT_COLUMNS, Filters

    settings = load_settings(args.config)
    db = settings.gateway.state_dir / DB_NAME
    if not db.exists():
        print(f"evedge export: no database at {db} (has the gateway run with this config?)", file=sys.stderr)
        return 1
    filters = Filters(args.since, args.until, args.charger, args.id_tag, args.stop_reason)
    sql, params = filters.select(EXPORT_COLUMNS)
    formats = Formats(args.lang or DEFAULT_LANGUAGE, settings.site.timezone)
    if args.format == "xlsx":
        output = args.output or Path("transactions.xlsx")
        written = write_xlsx(read_rows(db, f"{sql} LIMIT {XLSX_MAX_ROWS}", params), output, formats,
                             output.resolve().parent)  # fmt: skip
        print(f"{written} sessions written to {output}", file=sys.stderr)
        return 0
    chunks = csv_chunks(read_rows(db, sql, params), formats if args.lang else None)
    with (open(args.output, "wb") if args.output else contextlib.nullcontext(sys.stdout.buffer)) as out:
        for chunk in chunks:
            out.write(chunk)
    return 0


# -- sim -------------------------------------------------------------------------------------------------


def _sim(args: argparse.Namespace) -> int:
    from gateway.sim.charger import SimSpec
    from gateway.sim.site import make_charger, mixed_specs, run_site

    specs: list[SimSpec]
    settings = _optional_settings(args.config, os.environ)
    url = args.url or _sim_url(settings)
    try:
        tls = _sim_tls(args, settings, url)
    except OSError as e:
        print(f"evedge sim: {e}", file=sys.stderr)
        return 1
    if settings is not None and args.chargers is None:
        specs = [
            SimSpec(c.id, _version(args.version, n), url, c.password.get_secret_value(), evses=c.evses,
                    max_w=c.max_w, phases=c.phases, meter_interval_s=args.meter_interval, tls=tls)
            for n, c in enumerate(settings.chargers) if c.password is not None
        ]  # fmt: skip
    else:
        specs = mixed_specs(args.chargers or 2, url, args.password, args.prefix, meter_interval_s=args.meter_interval,
                            tls=tls)  # fmt: skip
        for n, spec in enumerate(specs):
            spec.version = _version(args.version, n)
    if not specs:
        print("evedge sim: no chargers to simulate (give --chargers N, or a config with passwords)", file=sys.stderr)
        return 1
    print(f"simulating {len(specs)} chargers against {url}: " + ", ".join(f"{s.id} ({s.version})" for s in specs)
          + (f"; an SDM630 grid meter on 127.0.0.1:{args.meter_port}" if args.meter_port else ""), flush=True)  # fmt: skip
    chargers = [make_charger(s) for s in specs]

    async def site() -> None:
        async with asyncio.TaskGroup() as tasks:
            if args.meter_port:
                tasks.create_task(_serve_grid_meter(chargers, "127.0.0.1", args.meter_port))
            tasks.create_task(run_site(chargers))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(site())
    return 0


def _sim_url(settings: Settings | None) -> str:
    if settings is None:
        return "ws://127.0.0.1:9000/ocpp"
    if settings.ocpp.security_profile >= 2:  # the plain port is closed
        return f"wss://{_local_url(settings.ocpp.tls_listen).removeprefix('http://')}/ocpp"
    return f"ws://{_local_url(settings.ocpp.listen).removeprefix('http://')}/ocpp"


def _sim_tls(args: argparse.Namespace, settings: Settings | None, url: str) -> SimTls | None:
    """What the simulated chargers trust over wss:// (and the certificate they show); OSError names a file missing."""
    from gateway.sim.certificates import SimTls

    if not url.startswith("wss://"):
        return None
    ca = args.ca or (settings.gateway.state_dir / "pki" / "ca.pem" if settings else None)
    if ca is None:
        raise FileNotFoundError("a wss:// URL needs --ca (the CA that signed the gateway's certificate)")
    if (args.cert is None) != (args.key is None):
        raise FileNotFoundError("--cert and --key go together")
    return SimTls(ca.read_text(), args.cert.read_text() if args.cert else None,
                  args.key.read_text() if args.key else None)  # fmt: skip


def _probe_modbus(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from drivers.modbus import BusError, probe
    from drivers.modbus.registers import MapError, meter_map
    from gateway.settings import ModbusRtuMeter, ModbusTcpMeter, format_errors

    common = {"id": "probe", "unit": args.unit, "profile": args.profile, "timeout_s": args.timeout}
    try:
        if args.rtu:
            meter: Any = ModbusRtuMeter(driver="modbus-rtu", device=args.rtu, baudrate=args.baud, parity=args.parity,
                                        stopbits=args.stopbits, **common)  # fmt: skip
            where = f"{args.rtu} at {args.baud} baud, unit {args.unit}"
        else:
            if not args.host:
                print("evedge probe modbus: give --host (Modbus TCP) or --rtu DEVICE (Modbus RTU)", file=sys.stderr)
                return 2
            meter = ModbusTcpMeter(driver="modbus", host=args.host, port=args.port, **common)
            where = f"{args.host}:{args.port}, unit {args.unit}"
        registers = {r.name: r for r in meter_map(meter).registers}
        values = asyncio.run(probe(meter))
    except ValidationError as e:
        print("\n".join(f"evedge probe modbus: {line}" for line in format_errors(e)), file=sys.stderr)
        return 2
    except MapError as e:
        print("\n".join(f"evedge probe modbus: {line}" for line in e.problems), file=sys.stderr)
        return 2
    except BusError as e:
        print(f"evedge probe modbus: {where}: {e}", file=sys.stderr)
        return 1
    print(f"{args.profile} at {where}")
    for name, (value, unit) in sorted(values.items()):
        # value None: not available (a NaN), or refused -- then `unit` says why
        shown = "not available" if value is None else _as_displayed(value, registers[name])
        print(f"  {name:18} {shown:>14} {unit or ''}")
    return 0


def _as_displayed(value: float, register: Any) -> str:
    """A value as a technician compares it with the meter's display: every digit its register carries, none
    of the noise of binary floats, and no exponent (%g showed 123456700 Wh as 1.23457e+08)."""
    import struct
    from decimal import Decimal

    if isinstance(value, int) or not register.scale:  # an unscaled integer register: exact
        return str(value)
    raw = (value - register.offset) / register.scale  # what the register holds
    if register.type == "f32":  # the fewest digits that give the same float32 back
        f32 = struct.Struct("f")
        held = next(t for p in range(1, 10)
                    if f32.unpack(f32.pack(float(t := f"{raw:.{p}g}"))) == f32.unpack(f32.pack(raw)))  # fmt: skip
    else:  # f64: Python's shortest round trip; an integer register: the integer
        held = repr(raw) if register.type == "f64" else str(round(raw))
    text = f"{Decimal(held) * Decimal(repr(register.scale)) + Decimal(repr(register.offset)):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _version(choice: str, n: int) -> str:
    return choice if choice != "mixed" else ("1.6" if n % 2 == 0 else "2.0.1")


def _optional_settings(path: Path | None, environ: Mapping[str, str]) -> Settings | None:
    if path is None and not config_path(None, environ).exists():
        return None
    return load_settings(path, environ)


if __name__ == "__main__":
    sys.exit(main())
