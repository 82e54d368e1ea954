"""Who may connect: refused at the handshake (HTTP 401/404) unless the id is known and the password right."""

from __future__ import annotations

import base64
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.auth import hash_password
from gateway.settings import load_settings
from tests.conftest import connected, eventually, running_gateway, write_config


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def refused_with(url: str, headers: dict[str, str] | None = None, subprotocol: str = "ocpp1.6") -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=[subprotocol], additional_headers=headers or {}):
            pass
    return refused.value.response.status_code


async def test_the_right_password_connects(gateway):
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"],
                       additional_headers=basic("CP16", "password-of-CP16")) as ws:  # fmt: skip
        assert ws.subprotocol == "ocpp1.6"
        await ws.send(json.dumps([2, "1", "Heartbeat", {}]))
        answer = json.loads(await ws.recv())
        assert answer[0] == 3 and answer[1] == "1" and "currentTime" in answer[2]


async def test_wrong_or_missing_credentials_are_refused_with_401(gateway):
    url = f"{gateway.ocpp_url}/CP16"
    assert await refused_with(url) == 401
    assert await refused_with(url, basic("CP16", "wrong-password")) == 401
    assert await refused_with(url, basic("CP201", "password-of-CP201")) == 401  # another charger's identity
    assert await refused_with(url, {"Authorization": "Basic !!!not-base64"}) == 401
    assert await refused_with(url, {"Authorization": "Bearer something"}) == 401
    assert gateway.app.ocpp.sessions == {}


async def test_an_unknown_id_is_refused_with_404_and_listed_as_pending(gateway):
    url = f"{gateway.ocpp_url}/STRANGER"
    assert await refused_with(url, basic("STRANGER", "whatever")) == 404
    assert await refused_with(url) == 404
    async with gateway.client() as api:
        pending = (await api.get("/api/v1/pending-chargers")).json()
    assert [(p["id"], p["attempts"]) for p in pending] == [("STRANGER", 1)]  # written down once a minute
    assert pending[0]["remote"].startswith("127.0.0.1:")


async def test_paths_that_are_not_ocpp_are_refused(gateway):
    base = gateway.ocpp_url.removesuffix("/ocpp")
    assert await refused_with(f"{base}/CP16", basic("CP16", "password-of-CP16")) == 404
    assert await refused_with(f"{base}/ocpp/CP16/extra", basic("CP16", "password-of-CP16")) == 404
    assert await refused_with(f"{base}/ocpp/bad%20id", basic("bad id", "x")) == 404


async def test_no_common_subprotocol_closes_at_once(gateway):
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.5"],  # type: ignore[list-item]
                       additional_headers=basic("CP16", "password-of-CP16")) as ws:  # fmt: skip
        assert ws.subprotocol is None
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1002


async def test_both_offered_prefers_201(gateway):
    async with connect(f"{gateway.ocpp_url}/CP201", subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
                       additional_headers=basic("CP201", "password-of-CP201")) as ws:  # fmt: skip
        assert ws.subprotocol == "ocpp2.0.1"


async def test_a_password_hash_from_evedge_passwd_works(tmp_path):
    extra = f"""
    [[chargers]]
    id = "HASHED"
    password_hash = "{hash_password("a-long-secret-1")}"
    """
    async with running_gateway(load_settings(write_config(tmp_path, extra), environ={})) as gw:
        url = f"{gw.ocpp_url}/HASHED"
        assert await refused_with(url, basic("HASHED", "not-it")) == 401
        for _ in range(2):  # the second time is served from the verified cache
            async with connect(url, subprotocols=["ocpp2.0.1"], additional_headers=basic("HASHED", "a-long-secret-1")):
                pass
        assert await refused_with(url, basic("HASHED", "not-it")) == 401


async def test_auto_accept_lets_unknown_ids_in(tmp_path):
    settings = load_settings(write_config(tmp_path, "\n"), environ={"EVEDGE_OCPP__AUTO_ACCEPT": "true"})
    async with running_gateway(settings) as gw:
        sim = gw.charger("NEWCOMER", "2.0.1", password="")
        async with connected(sim), gw.client() as api:
            await sim.start_session(1, "T1")
            view = (await api.get("/api/v1/chargers/NEWCOMER")).json()
            assert view["online"] is True and view["configured"] is False
            assert (await api.get("/api/v1/pending-chargers")).json() == []
        assert await refused_with(f"{gw.ocpp_url}/site") == 404  # not even auto_accept takes the site's own name


async def test_security_profile_0_needs_no_password(tmp_path):
    settings = load_settings(write_config(tmp_path), environ={"EVEDGE_OCPP__SECURITY_PROFILE": "0"})
    async with running_gateway(settings) as gw:
        async with connect(f"{gw.ocpp_url}/CP16", subprotocols=["ocpp1.6"]) as ws:
            assert ws.subprotocol == "ocpp1.6"
        assert await refused_with(f"{gw.ocpp_url}/UNKNOWN") == 404


async def test_the_same_id_connecting_again_replaces_the_old_session(gateway):
    headers = basic("CP16", "password-of-CP16")
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers) as old:
        await eventually(lambda: "CP16" in gateway.app.ocpp.sessions)
        first = gateway.app.ocpp.sessions["CP16"]
        async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers) as new:
            await eventually(lambda: gateway.app.ocpp.sessions.get("CP16") not in (None, first))
            with pytest.raises(ConnectionClosed):
                await old.recv()
            assert old.close_code == 1000
            await new.send(json.dumps([2, "h", "Heartbeat", {}]))
            assert json.loads(await new.recv())[1] == "h"
            # The old connection's end did not mark the charger offline: the new one is live.
            assert gateway.app.image.value("chargers/CP16/online") is True


KEY = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"  # an OCPP 1.6 AuthorizationKey, as a technician types it


def basic_raw(user: str, password: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user.encode() + b":" + password).decode()}


async def test_a_16_authorization_key_is_accepted_raw_or_as_text(tmp_path):
    extra = f"""
    [[chargers]]
    id = "KEYED"
    password = "{KEY}"

    [[chargers]]
    id = "KEYHASH"
    password_hash = "{hash_password(KEY)}"
    """
    async with running_gateway(load_settings(write_config(tmp_path, extra), environ={})) as gw:
        for charger_id in ("KEYED", "KEYHASH"):
            for sent in (bytes.fromhex(KEY), KEY.encode()):
                async with connect(f"{gw.ocpp_url}/{charger_id}", subprotocols=["ocpp1.6"],
                                   additional_headers=basic_raw(charger_id, sent)) as ws:  # fmt: skip
                    assert ws.subprotocol == "ocpp1.6"
            assert await refused_with(f"{gw.ocpp_url}/{charger_id}", basic_raw(charger_id, bytes(20))) == 401


async def test_an_address_that_keeps_failing_is_turned_away(gateway):
    from drivers.ocpp.server import FAILURES_PER_WINDOW

    url = f"{gateway.ocpp_url}/CP16"
    for _ in range(FAILURES_PER_WINDOW):
        assert await refused_with(url, basic("CP16", "guessing-password")) == 401
    assert await refused_with(url, basic("CP16", "password-of-CP16")) == 429  # even the right one, for a while
    assert await refused_with(f"{gateway.ocpp_url}/UNKNOWN") == 429
