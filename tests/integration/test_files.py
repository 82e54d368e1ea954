"""Firmware and diagnostics over HTTP on the web port: firmware put through the API is downloaded by simulated
chargers from the link the gateway puts in UpdateFirmware; diagnostics and logs they upload to the link in
GetDiagnostics / GetLog land under the state directory and are listed and downloaded through the API. The links
themselves refuse what they must: unknown or expired tokens, files too large, names that climb out."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gateway.auth import Role
from gateway.clock import utcnow
from gateway.settings import load_settings
from tests.conftest import connected, eventually, free_port, running_gateway, write_config

FIRMWARE = secrets.token_bytes(200_000)
SHA = hashlib.sha256(FIRMWARE).hexdigest()
STEPS = ["Downloading", "Downloaded", "Installing", "Installed"]


def files_under(directory: Path) -> list[Path]:
    """Every file, hidden ones (a half upload) included."""
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def state(gateway) -> Path:
    return gateway.app.settings.gateway.state_dir


async def statuses(gateway, charger_id: str, kind: str) -> list[tuple[str, int | None]]:
    rows = await gateway.app.store.files.statuses(charger_id)
    return [(r["status"], r["request_id"]) for r in reversed(rows) if r["kind"] == kind]


async def put_firmware(api: httpx.AsyncClient, name: str = "fw-2.0.bin") -> None:
    response = await api.put(f"/api/v1/firmware/{name}", content=FIRMWARE)
    assert response.status_code == 200, response.text
    assert response.json() == {"name": name, "size": len(FIRMWARE), "sha256": SHA}


UPDATES = [
    ("CP16", "1.6", "UpdateFirmware", lambda now: {"location": "fw-2.0.bin", "retrieveDate": now}, None),
    ("CP201", "2.0.1", "UpdateFirmware", lambda now: {"requestId": 41, "firmware": {"location": "fw-2.0.bin",
                                                                                    "retrieveDateTime": now}}, 41),
    ("CP16", "1.6", "SignedUpdateFirmware", lambda now: {"requestId": 42, "firmware": {
        "location": "fw-2.0.bin", "retrieveDateTime": now, "signingCertificate": "-----BEGIN CERTIFICATE-----",
        "signature": "c2lnbmF0dXJl"}}, 42),
]  # fmt: skip


@pytest.mark.parametrize("charger_id, version, action, payload, request_id", UPDATES,
                         ids=[f"{u[1]}-{u[2]}" for u in UPDATES])  # fmt: skip
async def test_a_charger_downloads_firmware_from_the_gateway_and_installs_it(gateway, charger_id, version, action,
                                                                             payload, request_id):  # fmt: skip
    sim = gateway.charger(charger_id, version)
    async with connected(sim), gateway.client() as api:
        await put_firmware(api)
        assert [(f["name"], f["size"], f["sha256"]) for f in (await api.get("/api/v1/firmware")).json()] == [
            ("fw-2.0.bin", len(FIRMWARE), SHA)
        ]
        response = await api.post(f"/api/v1/chargers/{charger_id}/ocpp/{action}", json=payload(sim.now()))
        assert response.status_code == 200, response.text
        await eventually(lambda: gateway.app.image.value(f"chargers/{charger_id}/firmware_status") == "Installed")
        assert sim.firmware_version == "fw-2.0.bin" and sim.firmware_sha256 == SHA
        signed = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed"]
        expected = signed if action == "SignedUpdateFirmware" else STEPS
        assert await statuses(gateway, charger_id, "firmware_status") == [(s, request_id) for s in expected]
        live = (await api.get(f"/api/v1/chargers/{charger_id}")).json()["live"]
        assert live["firmware_status"]["value"] == "Installed"
        history = (await api.get(f"/api/v1/chargers/{charger_id}/file-status")).json()
        assert history[0]["status"] == "Installed" and history[0]["action"].endswith("FirmwareStatusNotification")
        events = await gateway.app.store.events.query("firmware_status")
        assert events[0]["payload"] == {"charger": charger_id, "status": "Installed", "request_id": request_id}


async def test_a_201_charger_that_cannot_download_says_so(gateway):
    """A URL given by hand is passed through untouched: here one the gateway does not serve."""
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        url = f"{gateway.web_url}/files/firmware/{'x' * 32}/fw-2.0.bin"
        response = await api.post("/api/v1/chargers/CP201/ocpp/UpdateFirmware", json={
            "requestId": 7, "retries": 1, "retryInterval": 0, "firmware": {"location": url,
                                                                          "retrieveDateTime": sim.now()}})  # fmt: skip
        assert response.json() == {"status": "Accepted"}
        await eventually(lambda: gateway.app.image.value("chargers/CP201/firmware_status") == "DownloadFailed")
        assert await statuses(gateway, "CP201", "firmware_status") == [("Downloading", 7), ("DownloadFailed", 7)]
        assert sim.firmware_version == "sim-1.0" and sim.firmware_sha256 is None  # nothing installed


async def test_firmware_that_is_not_there_is_refused_before_it_reaches_the_charger(gateway):
    sim = gateway.charger("CP16", "1.6")
    async with connected(sim), gateway.client() as api:
        response = await api.post("/api/v1/chargers/CP16/ocpp/UpdateFirmware",
                                  json={"location": "missing-1.0.bin", "retrieveDate": sim.now()})  # fmt: skip
        assert response.status_code == 422
        assert response.json()["error"] == "invalid" and "missing-1.0.bin" in response.json()["message"]
        response = await api.post("/api/v1/chargers/CP16/ocpp/UpdateFirmware",
                                  json={"location": "../evedge.db", "retrieveDate": sim.now()})  # fmt: skip
        assert response.status_code == 422
        assert "UpdateFirmware" not in sim.heard


async def test_public_url_is_where_chargers_are_sent(tmp_path):
    """files.public_url replaces the address the charger reached: here one where nothing listens."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, extra=f'[files]\npublic_url = "{nowhere}/"\n')
    async with running_gateway(load_settings(config, environ={})) as gateway:
        sim = gateway.charger("CP201", "2.0.1")
        async with connected(sim), gateway.client() as api:
            await put_firmware(api)
            await api.post("/api/v1/chargers/CP201/ocpp/UpdateFirmware",
                           json={"requestId": 3, "firmware": {"location": "fw-2.0.bin"}})  # fmt: skip
            await eventually(lambda: gateway.app.image.value("chargers/CP201/firmware_status") == "DownloadFailed")


async def test_a_firmware_link_serves_its_file_only_and_resumes(gateway):
    files = gateway.app.store.files
    async with gateway.client() as api, httpx.AsyncClient(base_url=gateway.web_url) as charger:
        await put_firmware(api)
        await put_firmware(api, "other.bin")
        token = await files.new_link("CP16", "UpdateFirmware", utcnow() + timedelta(hours=1), file_name="fw-2.0.bin")
        whole = await charger.get(f"/files/firmware/{token}/fw-2.0.bin")
        assert whole.status_code == 200 and whole.content == FIRMWARE
        assert whole.headers["content-length"] == str(len(FIRMWARE))
        part = await charger.get(f"/files/firmware/{token}/fw-2.0.bin", headers={"Range": "bytes=1000-"})
        assert part.status_code == 206 and part.content == FIRMWARE[1000:]
        assert (await charger.get(f"/files/firmware/{token}/other.bin")).status_code == 404
        assert (await charger.get(f"/files/firmware/{'y' * 32}/fw-2.0.bin")).status_code == 404
        expired = await files.new_link("CP16", "UpdateFirmware", utcnow() - timedelta(seconds=1),
                                       file_name="fw-2.0.bin")  # fmt: skip
        assert (await charger.get(f"/files/firmware/{expired}/fw-2.0.bin")).status_code == 404
        upload = await files.new_link("CP16", "GetLog", utcnow() + timedelta(hours=1), max_bytes=1000)
        assert (await charger.get(f"/files/firmware/{upload}/fw-2.0.bin")).status_code == 404


UPLOADS = [
    ("CP16", "1.6", "GetDiagnostics", {}, "diagnostics_status", "DiagnosticsStatusNotification"),
    ("CP16", "1.6", "GetLog", {"logType": "DiagnosticsLog", "requestId": 11, "log": {"remoteLocation": ""}},
     "log_status", "LogStatusNotification"),
    ("CP201", "2.0.1", "GetLog", {"logType": "SecurityLog", "requestId": 12, "log": {}}, "log_status",
     "LogStatusNotification"),
]  # fmt: skip


@pytest.mark.parametrize("charger_id, version, action, payload, kind, notification", UPLOADS,
                         ids=[f"{u[1]}-{u[2]}" for u in UPLOADS])  # fmt: skip
async def test_diagnostics_and_logs_arrive_under_the_state_directory(gateway, charger_id, version, action, payload,
                                                                     kind, notification):  # fmt: skip
    sim = gateway.charger(charger_id, version)
    async with connected(sim), gateway.client() as api:
        answer = (await api.post(f"/api/v1/chargers/{charger_id}/ocpp/{action}", json=payload)).json()
        file_name = answer.get("fileName") or answer["filename"]
        listed = (await eventually(lambda: _get_json(api, f"/api/v1/uploads?charger={charger_id}")))[0]
        assert listed["charger"] == charger_id and listed["action"] == action
        assert listed["request_id"] == payload.get("requestId") and listed["file_name"] == file_name
        await eventually(lambda: gateway.app.image.value(f"chargers/{charger_id}/{kind}") == "Uploaded")
        request_id = payload.get("requestId")
        assert await statuses(gateway, charger_id, kind) == [("Uploading", request_id), ("Uploaded", request_id)]

        on_disk = files_under(state(gateway) / "uploads")
        assert [p.parent.name for p in on_disk] == [charger_id] and on_disk[0].name.endswith(file_name)
        assert hashlib.sha256(on_disk[0].read_bytes()).hexdigest() == listed["sha256"]
        assert on_disk[0].stat().st_size == listed["size"] > 0
        download = await api.get(f"/api/v1/uploads/{listed['id']}")
        assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == listed["sha256"]
        assert file_name in download.headers["content-disposition"]
        events = await gateway.app.store.events.query("upload_received")
        assert events[0]["payload"]["sha256"] == listed["sha256"]
        assert (await api.get("/api/v1/uploads?charger=CPBB")).json() == []


async def _get_json(api: httpx.AsyncClient, url: str):
    return (await api.get(url)).json()


async def test_an_upload_over_the_configured_size_is_refused_and_leaves_nothing(tmp_path):
    config = write_config(tmp_path, extra="[files]\nmax_upload_mb = 0.001\n")  # 1048 bytes; the sim's log is more
    async with running_gateway(load_settings(config, environ={})) as gateway:
        sim = gateway.charger("CP201", "2.0.1")
        async with connected(sim), gateway.client() as api:
            await api.post("/api/v1/chargers/CP201/ocpp/GetLog", json={"logType": "DiagnosticsLog", "log": {}})
            await eventually(lambda: gateway.app.image.value("chargers/CP201/log_status") == "UploadFailure")
            assert (await api.get("/api/v1/uploads")).json() == []
            assert files_under(state(gateway) / "uploads") == []


async def test_upload_links_refuse_what_they_must_and_store_nothing(gateway):
    files = gateway.app.store.files
    soon = utcnow() + timedelta(hours=1)
    uploads = state(gateway) / "uploads"
    async with httpx.AsyncClient(base_url=gateway.web_url) as charger:
        unknown = await charger.put(f"/files/uploads/{'z' * 32}/log.txt", content=b"hello")
        assert unknown.status_code == 404
        expired = await files.new_link("CP16", "GetLog", utcnow() - timedelta(seconds=1), max_bytes=1000)
        assert (await charger.put(f"/files/uploads/{expired}/log.txt", content=b"hello")).status_code == 404
        firmware = await files.new_link("CP16", "UpdateFirmware", soon, file_name="fw.bin")
        assert (await charger.put(f"/files/uploads/{firmware}/log.txt", content=b"hello")).status_code == 404

        token = await files.new_link("CP16", "GetLog", soon, request_id=5, max_bytes=1000)
        too_big = await charger.put(f"/files/uploads/{token}/log.txt", content=b"x" * 1001)
        assert too_big.status_code == 413

        async def stream():  # no Content-Length: the limit is found on the way
            for _ in range(10):
                yield b"y" * 500

        assert (await charger.put(f"/files/uploads/{token}/log.txt", content=stream())).status_code == 413
        form = await charger.post(f"/files/uploads/{token}/", files={"file": ("log.txt", b"z" * 2000)})
        assert form.status_code == 413
        for name in ("..%2F..%2Fevedge.db", "%2E%2E", ".hidden", "a%5Cb"):
            response = await charger.put(f"/files/uploads/{token}/{name}", content=b"hello")
            assert response.status_code in (400, 404), (name, response.status_code)
        form = await charger.post(f"/files/uploads/{token}/", files={"file": ("../../evedge.db", b"hello")})
        assert form.status_code == 400
        assert files_under(uploads) == [] and await files.uploads() == []
        assert files_under(state(gateway) / "firmware") == []

        ok = await charger.post(f"/files/uploads/{token}/", files={"file": ("log.txt", b"z" * 1000)},
                                data={"note": "fields besides the file are skipped"})  # fmt: skip
        assert ok.status_code == 201, ok.text
        again = await charger.put(f"/files/uploads/{token}/log.txt", content=b"hello")
        assert again.status_code == 409
        listed = await files.uploads()
        assert [(u["charger"], u["request_id"], u["file_name"], u["size"]) for u in listed] == [
            ("CP16", 5, "log.txt", 1000)
        ]
        assert [p.name.endswith("-log.txt") for p in files_under(uploads)] == [True]


async def test_roles_guard_uploads_and_firmware(gateway):
    guest, operator = await gateway.token(Role.guest), await gateway.token(Role.operator)
    token = await gateway.app.store.files.new_link("CP16", "GetLog", utcnow() + timedelta(hours=1), max_bytes=100)
    async with httpx.AsyncClient(base_url=gateway.web_url) as charger:
        assert (await charger.put(f"/files/uploads/{token}/a.log", content=b"log")).status_code == 201
    async with gateway.client(guest) as as_guest, gateway.client(operator) as as_operator, \
            gateway.client() as as_admin:  # fmt: skip
        upload_id = (await as_guest.get("/api/v1/uploads")).json()[0]["id"]
        assert (await as_guest.get(f"/api/v1/uploads/{upload_id}")).status_code == 403
        assert (await as_operator.get(f"/api/v1/uploads/{upload_id}")).content == b"log"
        assert (await as_operator.get("/api/v1/uploads/999")).status_code == 404
        for client in (as_guest, as_operator):
            assert (await client.put("/api/v1/firmware/fw.bin", content=b"fw")).status_code == 403
            assert (await client.delete("/api/v1/firmware/fw.bin")).status_code == 403
        assert (await as_admin.put("/api/v1/firmware/fw.bin", content=b"fw")).status_code == 200
        assert (await as_guest.get("/api/v1/firmware")).json()[0]["name"] == "fw.bin"
        for bad in (".hidden", "a b.bin", "%2E%2E"):
            assert (await as_admin.put(f"/api/v1/firmware/{bad}", content=b"fw")).status_code in (404, 422), bad
        assert (await as_admin.put("/api/v1/firmware/empty.bin", content=b"")).status_code == 422
        assert (await as_admin.delete("/api/v1/firmware/fw.bin")).status_code == 204
        assert (await as_admin.delete("/api/v1/firmware/fw.bin")).status_code == 404
        assert (await as_guest.get("/api/v1/firmware")).json() == []
        audit = [(a["command"], a["outcome"]) for a in (await as_admin.get("/api/v1/audit")).json()]
        assert ("PutFirmware", "ok") in audit and ("DeleteFirmware", "ok") in audit
    assert [p for p in files_under(state(gateway) / "firmware") if p.name.startswith(".")] == []
    assert not os.path.exists(state(gateway) / "firmware" / "empty.bin")


async def test_an_upload_cut_off_midway_leaves_no_file(gateway):
    token = await gateway.app.store.files.new_link("CP16", "GetLog", utcnow() + timedelta(hours=1), max_bytes=10_000)
    uploads = state(gateway) / "uploads"
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.app.web.port)
    writer.write(f"PUT /files/uploads/{token}/log.txt HTTP/1.1\r\nHost: gateway\r\nContent-Length: 5000\r\n\r\n"
                 .encode() + b"x" * 1000)  # fmt: skip
    await writer.drain()
    await eventually(lambda: [p.name.startswith(".") for p in files_under(uploads)] == [True])  # arriving, hidden
    writer.close()
    await writer.wait_closed()
    await eventually(lambda: files_under(uploads) == [])
    assert await gateway.app.store.files.uploads() == []
    async with httpx.AsyncClient(base_url=gateway.web_url) as charger:  # the link still takes the whole file
        assert (await charger.put(f"/files/uploads/{token}/log.txt", content=b"x" * 5000)).status_code == 201


async def test_a_201_local_controller_reports_publishing_firmware(gateway):
    """PublishFirmwareStatusNotification (block L): what a local controller says while it publishes firmware."""
    from ocpp.v201 import call

    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        for status in ("Downloading", "Published"):
            answer = await sim.call(call.PublishFirmwareStatusNotification(
                status=status, request_id=12, location=["http://192.0.2.5/fw.bin"] if status == "Published" else None))  # fmt: skip
            assert answer is not None
        await eventually(lambda: gateway.app.image.value("chargers/CP201/publish_firmware_status") == "Published")
        history = (await api.get("/api/v1/chargers/CP201/file-status")).json()
        assert [(h["status"], h["action"]) for h in history[:2]] == [
            ("Published", "PublishFirmwareStatusNotification"), ("Downloading", "PublishFirmwareStatusNotification")]
        events = await gateway.app.store.events.query("publish_firmware_status")
        assert events[0]["payload"]["status"] == "Published"
