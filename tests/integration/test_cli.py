"""The `evedge` command, run as a user would: a separate process."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.auth import Role, verify_password
from gateway.settings import load_settings
from tests.conftest import ROOT, connected, eventually, free_port, running_gateway, write_config


@contextlib.asynccontextmanager
async def evedge_process(*args: str, log: Path | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """`evedge ARGS` running beside the test, stdout piped, its log into `log`; killed if the test leaves it
    running. It leads a process group of its own, as a command typed in a terminal does."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVEDGE_")}
    with open(log or os.devnull, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", *args, cwd=ROOT,
                                                       env=environ, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                                                       start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def evedge(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = 60) -> tuple[int, str, str]:  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVEDGE_")} | (env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=ROOT, env=environ, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), timeout)
    return process.returncode or 0, out.decode(), err.decode()


async def test_check_config_accepts_the_shipped_files():
    for name in ("etc/evedge.toml", "etc/demo.toml"):
        code, out, _ = await evedge("check-config", "-c", name)
        assert code == 0 and "OK" in out


async def test_check_config_names_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[ocpp]\nlisten = "9000"\ncolour = "red"\n[site]\nlimit_w = -1\n'
        '[[groups]]\nid = "g1"\nchargers = ["GHOST"]\n'
        '[[chargers]]\nid = "CP01"\npassword = "s3cret-value"\nmax_w = 0\n'
    )
    code, out, err = await evedge("check-config", "-c", str(bad))
    assert code == 1 and out == ""
    assert "ocpp.listen: expected HOST:PORT" in err
    assert "ocpp.colour: unknown key" in err
    assert "site.limit_w: Input should be greater than 0" in err
    assert "chargers.CP01.max_w: Input should be greater than 0" in err
    assert "s3cret-value" not in err

    refs = tmp_path / "refs.toml"
    refs.write_text('[[groups]]\nid = "g1"\nchargers = ["GHOST"]\n[[chargers]]\nid = "CP01"\n')
    code, _, err = await evedge("check-config", "-c", str(refs))
    assert code == 1
    assert "groups.g1.chargers: no charger has the id 'GHOST'" in err
    assert "chargers.CP01.password: required with ocpp.security_profile = 1" in err

    code, _, err = await evedge("check-config", "-c", str(tmp_path / "missing.toml"))
    assert code == 1 and "no such file" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("[ocpp\nlisten=")
    code, _, err = await evedge("check-config", "-c", str(broken))
    assert code == 1 and "not valid TOML" in err


async def test_environment_overrides_the_file(tmp_path):
    config = write_config(tmp_path)
    code, _, err = await evedge("check-config", "-c", str(config), env={"EVEDGE_SITE__LIMIT_W": "lots"})
    assert code == 1 and "site.limit_w" in err and "[from EVEDGE_SITE__LIMIT_W]" in err
    code, _, err = await evedge("check-config", env={"EVEDGE_CONFIG": str(config), "EVEDGE_NOSUCH__KEY": "1"})
    assert code == 1 and "EVEDGE_NOSUCH__KEY: there is no section 'nosuch'" in err
    settings = load_settings(config, {"EVEDGE_CHARGERS__CP16__MAX_W": "7400", "EVEDGE_OCPP__AUTO_ACCEPT": "true",
                                      "EVEDGE_GROUPS": '[{"id": "row", "chargers": ["CP16"]}]'})  # fmt: skip
    assert settings.charger("CP16").max_w == 7400 and settings.ocpp.auto_accept is True
    assert [g.id for g in settings.groups] == ["row"]


async def test_run_refuses_a_bad_config_and_a_taken_port(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[web]\nlisten = "nowhere"\n')
    code, _, err = await evedge("run", "-c", str(bad))
    assert code == 1 and "web.listen: expected HOST:PORT" in err

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = write_config(tmp_path, web_port=taken.getsockname()[1])
        code, _, err = await evedge("run", "-c", str(config))
    assert code == 1 and "cannot start" in err and "address already in use" in err.lower()


async def test_passwd_makes_a_hash_a_charger_can_log_in_with(tmp_path):
    code, out, _ = await evedge("passwd", "--password-stdin", stdin="correct horse battery\n")
    assert code == 0
    hashed = out.strip()
    assert hashed.startswith("scrypt$") and verify_password("correct horse battery", hashed)
    assert not verify_password("wrong", hashed)
    code, _, err = await evedge("passwd", "--password-stdin", stdin="too short\n")
    assert code == 1 and "16 to 40 characters" in err

    config = write_config(tmp_path, f'\n[[chargers]]\nid = "HASHED"\npassword_hash = "{hashed}"\n')
    async with running_gateway(load_settings(config, environ={})) as gw:
        sim = gw.charger("HASHED", "1.6", password="correct horse battery")
        async with connected(sim):
            assert sim.boots == 1


async def test_token_create_and_user_add(tmp_path):
    config = write_config(tmp_path)
    async with running_gateway(load_settings(config, environ={})) as gw:
        code, out, err = await evedge("token", "create", "--role", "guest", "--label", "wallboard", "-c", str(config))
        assert code == 0 and "shown once" in err
        token = out.strip()
        async with gw.client(token) as api:
            assert (await api.get("/api/v1/chargers")).status_code == 200
            assert (await api.post("/api/v1/chargers/CP16/ocpp/ClearCache", json={})).status_code == 403

        code, _, _ = await evedge("user", "add", "maria", "--role", "operator", "--password-stdin", "-c", str(config),
                                  stdin="a good password\n")  # fmt: skip
        assert code == 0
        assert await gw.app.store.accounts.check_user("maria", "a good password") == Role.operator
        assert await gw.app.store.accounts.check_user("maria", "a bad password") is None


async def test_send_reaches_the_charger_and_is_audited(tmp_path):
    config = write_config(tmp_path)
    async with running_gateway(load_settings(config, environ={})) as gw:
        sim = gw.charger("CP16", "1.6")
        async with connected(sim):
            url = gw.web_url
            code, out, _ = await evedge("send", "-c", str(config), "--url", url, "CP16", "GetConfiguration",
                                        '{"key": ["NumberOfConnectors"]}')  # fmt: skip
            assert code == 0, out
            assert '"key": "NumberOfConnectors"' in out and sim.heard[-1] == "GetConfiguration"
            sim.config["SupportedFeatureProfiles"] = "Core"  # no local list: it answers with a CALLERROR
            code, _, err = await evedge("send", "-c", str(config), "--url", url, "CP16", "GetLocalListVersion")
            assert code == 1 and "callError" in err
            code, _, err = await evedge("send", "-c", str(config), "--url", url, "CP16", "Reset", "not json")
            assert code == 2 and "not JSON" in err
        audit = await gw.app.store.audit.query(target="CP16")
        assert audit[-1]["actor"] == f"api:cli:{getpass.getuser()}"
        # The one-minute token the CLI minted was revoked once used.
        rows = await gw.app.store.db.fetchall("SELECT label FROM api_tokens WHERE label LIKE 'cli:%'")
        assert rows == []


async def test_demo_shows_sessions_within_a_minute(tmp_path):
    ocpp_port, web_port, meter_port, mqtt_port, opcua_port = (free_port() for _ in range(5))
    log = tmp_path / "demo.log"
    async with evedge_process("demo", "--state-dir", str(tmp_path / "demo"), "--ocpp-port", str(ocpp_port),
                              "--web-port", str(web_port), "--meter-port", str(meter_port), "--mqtt-port",
                              str(mqtt_port), "--opcua-port", str(opcua_port), log=log) as process:  # fmt: skip
        banner = ""
        while "Admin token" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "the demo ended before printing its URLs"
            banner += line.decode()
        token = banner.split("Admin token")[1].split()[0]
        assert f"http://127.0.0.1:{web_port}/api/v1/health" in banner
        assert f"Web console           http://127.0.0.1:{web_port}/  (user demo, password " in banner
        assert f"ws://127.0.0.1:{ocpp_port}/ocpp" in banner
        assert f"mqtt://127.0.0.1:{mqtt_port}" in banner and f"opc.tcp://127.0.0.1:{opcua_port}/evedge" in banner

        async def sessions() -> list:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as api:
                return (await api.get(f"http://127.0.0.1:{web_port}/api/v1/transactions")).json()

        rows = await eventually(sessions, timeout=60, interval=0.5)
        assert {r["charger"] for r in rows} <= {"CP01", "CP02", "CP03", "CP04"}
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as api:
            grid = (await api.get(f"http://127.0.0.1:{web_port}/api/v1/meters")).json()[0]
        assert grid["id"] == "grid" and grid["online"] is True
        assert grid["values"]["power_w"]["value"] > 10000 and grid["values"]["power_w"]["quality"] == "good"
        async with httpx.AsyncClient() as api:  # every bridge is on: the demo brought its own broker
            health = (await api.get(f"http://127.0.0.1:{web_port}/api/v1/health")).json()
        assert health["parts"]["mqtt"]["status"] == "ok" and health["parts"]["outbox"]["status"] == "ok"
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in its terminal: the demo's whole process group hears it
        assert await asyncio.wait_for(process.wait(), 30) == 0
    text = log.read_text()
    assert "gateway.app stopping" in text and "ERROR" not in text and "Traceback" not in text, text[-3000:]
    with pytest.raises(OSError):  # and took it away again
        socket.create_connection(("127.0.0.1", mqtt_port), timeout=1).close()


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    for name in list(os.environ):
        if name.startswith("EVEDGE_"):
            monkeypatch.delenv(name)


async def test_sim_connects_the_configured_chargers_and_charges(tmp_path):
    config = write_config(tmp_path)
    async with running_gateway(load_settings(config, environ={})) as gw:
        async with evedge_process("sim", "-c", str(config), "--url", gw.ocpp_url, "--meter-interval", "1",
                                  "--meter-port", "0") as process:
            first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            assert "CP16 (1.6)" in first and "CP201 (2.0.1)" in first and "CPBB (1.6)" in first
            await eventually(lambda: all(gw.app.image.value(f"chargers/{c}/online") for c in ("CP16", "CP201", "CPBB")),
                             timeout=20)  # fmt: skip
            await eventually(lambda: gw.app.store.transactions.query(), timeout=40, interval=0.5)
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_sim_connects_over_tls_to_a_gateway_under_profile_2(tmp_path):
    # The plain port is closed: the sim takes wss:// from the config and trusts the site CA in its state_dir.
    config = write_config(tmp_path)
    code, _, err = await evedge("sim", "-c", str(config), "--url", "wss://127.0.0.1:1/ocpp", "--meter-port", "0")
    assert code == 1 and "pki/ca.pem" in err, err  # a gateway that never ran has no site CA yet
    config.write_text(config.read_text().replace('tls_listen = "127.0.0.1:0"',
                                                 f'tls_listen = "127.0.0.1:{free_port()}"\nsecurity_profile = 2'))
    async with running_gateway(load_settings(config, environ={})) as gw:
        assert gw.app.ocpp.port is None
        async with evedge_process("sim", "-c", str(config), "--meter-port", "0") as process:
            first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            assert f"against wss://127.0.0.1:{gw.app.ocpp.tls_port}/ocpp" in first
            await eventually(lambda: all(gw.app.image.value(f"chargers/{c}/online") for c in ("CP16", "CP201", "CPBB")),
                             timeout=20)  # fmt: skip
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_check_config_names_meter_problems(tmp_path):
    bad = tmp_path / "meters.toml"
    bad.write_text(
        '[site]\ngrid_meter = "gird"\n'
        '[[meters]]\nid = "grid"\ndriver = "modbus"\nhost = "10.0.0.5"\nprofile = "eastron-sdm360"\n'
        '[[meters]]\nid = "sub"\ndriver = "modbus"\nprofile = "eastron-sdm630"\n'
        '[[meters]]\nid = "inline"\ndriver = "modbus"\nhost = "10.0.0.6"\n'
        '[meters.registers.power_w]\naddress = 0\nkind = "input"\ntype = "f32"\n'
        '[meters.registers.energy_import_wh]\naddress = 1\nkind = "input"\ntype = "u32"\n'
        '[[meters]]\nid = "bms"\ndriver = "opcua"\nendpoint = "bms:4840"\n[meters.points]\npower_w = "ns=2;s=X"\n'
    )
    code, _, err = await evedge("check-config", "-c", str(bad))
    assert code == 1
    assert "site.grid_meter: no meter has the id 'gird'" in err
    assert "meters.sub.host: required key is missing" in err
    assert "meters.bms.endpoint: must be an opc.tcp://HOST:PORT/... address" in err
    # What only the driver can tell comes once the file's own problems are fixed:
    bad.write_text(bad.read_text().replace('"gird"', '"grid"\nfallback_limit_w = 20000').replace('profile = "eastron-sdm630"\n',
                   'host = "10.0.0.7"\nprofile = "eastron-sdm630"\n').replace("bms:4840", "opc.tcp://bms:4840"))  # fmt: skip
    code, _, err = await evedge("check-config", "-c", str(bad))
    assert code == 1
    assert "meters.grid.profile: no profile named 'eastron-sdm360' (there are: " in err
    assert "meters.inline.registers.energy_import_wh: overlaps power_w (input registers 0..1)" in err


async def test_probe_reads_a_meter_once(tmp_path):
    from drivers.modbus.registers import load_profile
    from tests.integration.test_modbus import SITE, serving, sim_meter

    async def probe(unit: int, profile: str, *more: str) -> tuple[int, dict[str, list[str]], str]:
        code, out, err = await evedge("probe", "modbus", "--host", "127.0.0.1", "--port", str(port), "--unit",
                                      str(unit), "--profile", profile, *more)  # fmt: skip
        if code == 0:
            assert out.startswith(f"{profile} at 127.0.0.1:{port}, unit {unit}\n")
        return code, {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}, err

    # A meter's display shows every digit: 12345678 Wh, not 1.23457e+07; 123456.7 kWh in an SDM630's float is
    # 123456700 Wh, not 123456703.125 nor 1.23457e+08.
    meters = [sim_meter(4, load_profile("janitza-umg604"), SITE),
              sim_meter(5, load_profile("eastron-sdm630"), SITE | {"energy_import_wh": 123_456_700.0}),
              sim_meter(6, load_profile("janitza-umg604"), SITE)]  # fmt: skip
    meters[2].answering = False
    async with serving(*meters) as port:
        code, lines, err = await probe(4, "janitza-umg604")
        assert code == 0, err
        assert lines["power_w"] == ["-4321.5", "W"] and lines["energy_import_wh"] == ["12345678", "Wh"]
        assert lines["frequency_hz"] == ["49.98", "Hz"] and lines["current_a_l2"] == ["6.09", "A"]
        code, lines, err = await probe(5, "eastron-sdm630")
        assert code == 0, err
        assert lines["energy_import_wh"] == ["123456700", "Wh"] and lines["energy_export_wh"] == ["234567", "Wh"]
        assert lines["voltage_v_l1"] == ["230.1", "V"]
        # A silent unit: our one line, not pymodbus's error and hex dump of the frames.
        code, _, err = await probe(6, "janitza-umg604", "--timeout", "0.3")
        assert code == 1 and err.splitlines() == [f"evedge probe modbus: 127.0.0.1:{port}, unit 6: unit 6 did not "
                                                  "answer (ModbusIOException)"]  # fmt: skip
        code, _, err = await probe(9, "janitza-umg604", "--timeout", "0.3")  # no such unit behind the gateway
        assert code == 1 and "unit 9 refused" in err
    code, _, err = await evedge("probe", "modbus", "--host", "127.0.0.1", "--profile", "no-such-meter")
    assert code == 2 and "no profile named 'no-such-meter'" in err
