"""Charging sessions end to end: simulated chargers over real websockets, the gateway, the HTTP API."""

from __future__ import annotations

import csv
import io

import pytest

from gateway.sim.ev import Ev
from tests.conftest import connected, eventually


@pytest.mark.parametrize("charger_id, version", [("CP16", "1.6"), ("CP201", "2.0.1")])
async def test_a_session_is_recorded_with_its_energy_and_soc(gateway, charger_id, version):
    sim = gateway.charger(charger_id, version)
    async with connected(sim), gateway.client() as api:
        evse = await sim.plug_in(1, Ev(capacity_wh=50000, soc=20.0, max_w=11000, id_tag="BADGE-42"))
        await sim.start_session(1)
        start_wh = evse.meter_wh
        sim.advance(900)  # 15 minutes at 11 kW
        await sim.send_meter_values(1)
        sim.advance(900)
        await sim.send_meter_values(1)
        soc_before_stop = evse.ev.soc
        await sim.stop_session(1, "Local")
        stop_wh = evse.meter_wh

        rows = (await api.get("/api/v1/transactions", params={"charger": charger_id})).json()
        assert len(rows) == 1
        tx = rows[0]
        assert tx["id_tag"] == "BADGE-42"
        assert tx["evse"] == 1 and tx["connector"] == 1
        assert tx["stopped_at"] is not None
        assert tx["stop_reason"] == "Local"
        # 1.6 counts whole Wh on the wire, 2.0.1 tenths: the record holds what the charger said.
        precision = 1.0 if version == "1.6" else 0.1
        assert tx["meter_start_wh"] == pytest.approx(start_wh, abs=precision)
        assert tx["meter_stop_wh"] == pytest.approx(stop_wh, abs=precision)
        assert tx["energy_wh"] == pytest.approx(tx["meter_stop_wh"] - tx["meter_start_wh"])
        assert tx["energy_wh"] == pytest.approx(5500.0, abs=1.0)  # 11 kW for half an hour
        assert tx["soc_start"] == pytest.approx(20.0, abs=0.1)
        assert tx["soc_end"] == pytest.approx(soc_before_stop, abs=0.1)

        exported = (await api.get("/api/v1/transactions", params={"charger": charger_id, "format": "csv"}))
        assert exported.headers["content-type"].startswith("text/csv")
        csv_rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [r["id"] for r in csv_rows] == [str(tx["id"])]
        assert float(csv_rows[0]["energy_wh"]) == pytest.approx(tx["energy_wh"])
        assert csv_rows[0]["id_tag"] == "BADGE-42" and csv_rows[0]["stop_reason"] == "Local"

        samples = (await api.get(f"/api/v1/chargers/{charger_id}/meter-values")).json()
        in_session = [s for s in samples if s["transaction_id"] == tx["id"]]
        # Begin, two periodic samples, End: as received, with their context.
        contexts = [s["sampled_value"][0]["context"] for s in in_session]
        assert contexts == ["Transaction.Begin", "Sample.Periodic", "Sample.Periodic", "Transaction.End"]
        energy = [sv for sv in in_session[1]["sampled_value"] if sv["measurand"] == "Energy.Active.Import.Register"]
        assert float(energy[0]["value"]) == pytest.approx(start_wh + 2750.0, abs=1.0)


@pytest.mark.parametrize("charger_id, version", [("CP16", "1.6"), ("CP201", "2.0.1")])
async def test_live_state_follows_the_session(gateway, charger_id, version):
    sim = gateway.charger(charger_id, version)
    async with connected(sim), gateway.client() as api:
        await sim.plug_in(1, Ev(soc=50.0, max_w=7400, phases=1))
        await sim.start_session(1)
        await sim.send_meter_values(1)
        view = (await api.get(f"/api/v1/chargers/{charger_id}")).json()
        assert view["online"] is True and view["ocpp_version"] == version
        assert view["boot"]["vendor"] == "evedge" and view["boot"]["model"] == "SimCharger"
        evse = view["evses"][0]
        assert evse["status"]["value"] == "Charging"
        assert evse["power_w"]["value"] == pytest.approx(7400.0)
        assert evse["current_a_l1"]["value"] == pytest.approx(7400 / 230, abs=0.01)
        assert evse["soc"]["value"] == pytest.approx(50.0)
        assert evse["transaction_id"]["value"] > 0

        await sim.stop_session(1)
        await sim.unplug(1)
        view = (await api.get(f"/api/v1/chargers/{charger_id}")).json()
        assert view["evses"][0]["status"]["value"] == "Available"
        assert view["evses"][0]["transaction_id"]["value"] == 0
        assert view["evses"][0]["power_w"]["value"] == 0.0

    # The charger went away: the gateway says so, and no longer vouches for its last values.
    await eventually(lambda: gateway.app.image.value(f"chargers/{charger_id}/online") is False)
    assert gateway.app.image.get(f"chargers/{charger_id}/evse/1/power_w").quality == "uncertain"


async def test_both_versions_side_by_side_on_one_port(gateway):
    a, b = gateway.charger("CP16", "1.6"), gateway.charger("CP201", "2.0.1")
    async with connected(a, b), gateway.client() as api:
        for sim in (a, b):
            await sim.plug_in(1)
            await sim.start_session(1)
        chargers = {c["id"]: c for c in (await api.get("/api/v1/chargers")).json()}
        assert chargers["CP16"]["ocpp_version"] == "1.6"
        assert chargers["CP201"]["ocpp_version"] == "2.0.1"
        assert len((await api.get("/api/v1/transactions")).json()) == 2


async def test_a_second_evse_runs_its_own_session(gateway):
    sim = gateway.charger("CP16", "1.6", evses=2)
    async with connected(sim), gateway.client() as api:
        await sim.start_session(1, "TAG-A")
        await sim.start_session(2, "TAG-B")
        await sim.stop_session(1)
        rows = {r["id_tag"]: r for r in (await api.get("/api/v1/transactions")).json()}
        assert rows["TAG-A"]["evse"] == 1 and rows["TAG-A"]["stopped_at"] is not None
        assert rows["TAG-B"]["evse"] == 2 and rows["TAG-B"]["stopped_at"] is None


async def test_transactions_filter_by_charger_badge_and_time(gateway):
    a, b = gateway.charger("CP16", "1.6"), gateway.charger("CP201", "2.0.1")
    async with connected(a, b), gateway.client() as api:
        await a.start_session(1, "ALICE")
        await b.start_session(1, "BOB")
        rows = (await api.get("/api/v1/transactions")).json()
        assert {r["id_tag"] for r in rows} == {"ALICE", "BOB"}
        assert [r["id_tag"] for r in (await api.get("/api/v1/transactions", params={"id_tag": "BOB"})).json()] == ["BOB"]
        assert [r["charger"] for r in (await api.get("/api/v1/transactions", params={"charger": "CP16"})).json()] == ["CP16"]
        latest = max(r["started_at"] for r in rows)
        after = (await api.get("/api/v1/transactions", params={"since": latest})).json()
        assert [r["started_at"] for r in after] == [latest]
        before = (await api.get("/api/v1/transactions", params={"until": latest})).json()
        assert latest not in [r["started_at"] for r in before] and len(before) == 1
        assert (await api.get("/api/v1/transactions", params={"since": "yesterday"})).status_code == 422


async def test_a_repeated_start_gets_the_same_transaction(gateway):
    """A 1.6 charger that lost our answer sends the same StartTransaction again: one record, one id."""
    sim = gateway.charger("CP16", "1.6")
    async with connected(sim):
        from ocpp.v16 import call

        request = call.StartTransaction(connector_id=1, id_tag="RETRY", meter_start=1000, timestamp=sim.now())
        first = await sim.call(request)
        second = await sim.call(request)
        assert first.transaction_id == second.transaction_id
        rows = await gateway.app.store.transactions.query(id_tag="RETRY")
        assert len(rows) == 1
