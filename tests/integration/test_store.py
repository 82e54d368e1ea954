"""The store on a real SQLite file: migrations, group commit, isolation of a failing write, ids across reopen."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from gateway.auth import Actor, Role
from gateway.commands import CommandError, Commands, OcppRequest
from gateway.store import Sample, Store
from gateway.store.db import migrations

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


async def test_the_schema_is_migrated_once(tmp_path):
    async with Store(tmp_path) as store:
        (version,) = await store.db.fetchone("PRAGMA user_version")
        assert version == migrations()[-1][0]
        (mode,) = await store.db.fetchone("PRAGMA journal_mode")
        assert mode == "wal"
    async with Store(tmp_path) as store:  # opening again changes nothing
        assert (await store.db.fetchone("PRAGMA user_version"))[0] == version


async def test_concurrent_writes_share_commits_and_all_land(tmp_path):
    async with Store(tmp_path) as store:
        txs = await asyncio.gather(*(
            store.transactions.start("CP", n, 1, f"T{n}", T0, 1000.0 * n) for n in range(1, 201)
        ))  # fmt: skip
        assert len({tx.id for tx in txs}) == 200
        assert store.db.commits < 200  # writes that arrived together were committed together
        assert len(await store.transactions.query(limit=1000)) == 200


async def test_a_failing_write_does_not_take_its_neighbours_down(tmp_path):
    async with Store(tmp_path) as store:
        async def broken(conn):
            await conn.execute("INSERT INTO no_such_table VALUES (1)")

        results = await asyncio.gather(
            store.transactions.start("CP", 1, 1, "A", T0, 0.0),
            store.db.write(broken),
            store.transactions.start("CP", 2, 1, "B", T0, 0.0),
            return_exceptions=True,
        )
        assert isinstance(results[1], sqlite3.OperationalError)
        assert {r.id_tag for r in results if not isinstance(r, Exception)} == {"A", "B"}
        assert len(await store.transactions.query()) == 2


async def test_16_ids_are_never_handed_out_twice(tmp_path):
    async with Store(tmp_path) as store:
        first = await store.transactions.start("CP", 1, 1, "A", T0, 0.0)
        await store.db.execute("DELETE FROM transactions WHERE id = ?", (first.id,))
    async with Store(tmp_path) as store:
        second = await store.transactions.start("CP", 1, 1, "B", T0, 0.0)
    assert second.id > first.id


async def test_a_session_moves_forward_and_closes_once(tmp_path):
    async with Store(tmp_path) as store:
        tx = await store.transactions.start("CP", 1, 1, "A", T0, 5000.0, soc=20.0)
        samples = [Sample(T0 + timedelta(minutes=n), [{"value": str(5000 + 100 * n)}], 5000.0 + 100 * n, 20.0 + n)
                   for n in (1, 2)]  # fmt: skip
        await store.transactions.record_meter_values("CP", 1, tx.id, samples)
        running = await store.transactions.get(tx.id)
        assert running.meter_last_wh == 5200.0 and running.soc_end == 22.0 and running.energy_so_far_wh == 200.0
        closed = await store.transactions.stop(tx.id, T0 + timedelta(hours=1), 5900.0, "Local")
        assert closed.energy_wh == 900.0 and closed.soc_start == 20.0 and closed.soc_end == 22.0
        again = await store.transactions.stop(tx.id, T0 + timedelta(hours=2), 9999.0, "Remote")
        assert again.energy_wh == 900.0 and again.stop_reason == "Local"


async def test_a_new_session_on_a_busy_evse_closes_the_lost_one(tmp_path):
    async with Store(tmp_path) as store:
        lost = await store.transactions.start("CP", 1, 1, "A", T0, 12345.6)
        await store.transactions.record_meter_values("CP", 1, lost.id, [Sample(T0, [], 12410.2, None)])
        await store.transactions.start("CP", 1, 1, "B", T0 + timedelta(hours=1), 12500.0)
        closed = await store.transactions.get(lost.id)
        assert closed.stop_reason == "Superseded" and closed.energy_wh == 64.6  # not 64.600000000000364


async def test_201_transactions_are_found_by_the_chargers_id(tmp_path):
    async with Store(tmp_path) as store:
        tx = await store.transactions.start("CS", 1, 1, None, T0, 0.0, ocpp_id="uuid-1")
        assert (await store.transactions.start("CS", 1, 1, None, T0, 0.0, ocpp_id="uuid-1")).id == tx.id
        assert (await store.transactions.by_ocpp_id("CS", "uuid-1")).id == tx.id
        assert await store.transactions.by_ocpp_id("OTHER", "uuid-1") is None


async def test_pruning_keeps_sessions_and_recent_meter_values(tmp_path):
    async with Store(tmp_path) as store:
        tx = await store.transactions.start("CP", 1, 1, "A", T0, 0.0)
        old = [Sample(datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=n), [], None, None) for n in range(12000)]
        await store.transactions.record_meter_values("CP", 1, tx.id, old + [Sample(T0, [], None, None)])
        removed = await store.transactions.prune_meter_values(datetime(2021, 1, 1, tzinfo=UTC))
        assert removed == 12000
        assert len(await store.transactions.meter_values("CP")) == 1
        assert await store.transactions.get(tx.id) is not None


async def test_refused_ids_are_listed_and_bounded(tmp_path, monkeypatch):
    from gateway.store import chargers

    monkeypatch.setattr(chargers, "MAX_PENDING", 3)
    async with Store(tmp_path) as store:
        await store.chargers.refused("X0", "10.0.0.9:1", T0)
        await store.chargers.refused("X0", "10.0.0.9:2", T0 + timedelta(minutes=1))
        assert [(p["id"], p["attempts"], p["remote"]) for p in await store.chargers.pending()] == [
            ("X0", 2, "10.0.0.9:2")
        ]
        for n in range(1, 5):  # full: the id heard from longest ago makes room
            await store.chargers.refused(f"X{n}", "10.0.0.9:1", T0 + timedelta(minutes=1 + n))
        assert [p["id"] for p in await store.chargers.pending()] == ["X4", "X3", "X2"]


async def test_the_door_checks_the_role_and_audits_before_and_after(tmp_path):
    async with Store(tmp_path) as store:
        commands = Commands(store.audit)
        seen = []

        async def handler(cmd):
            seen.append(cmd)
            rows = await store.audit.query()
            assert rows[0]["outcome"] is None  # recorded before it ran
            return {"status": "Accepted"}

        commands.register(OcppRequest, handler)
        with pytest.raises(ValueError):
            commands.register(OcppRequest, handler)
        with pytest.raises(CommandError) as refused:
            await commands.execute(OcppRequest("CP", "Reset", {"type": "Soft"}), Actor("eve", Role.guest, "api"))
        assert refused.value.code == "forbidden" and seen == []
        result = await commands.execute(OcppRequest("CP", "Reset", {"type": "Soft"}), Actor("bob", Role.operator, "mqtt"))
        assert result == {"status": "Accepted"} and len(seen) == 1
        rows = await store.audit.query()
        assert [(r["actor"], r["outcome"]) for r in rows] == [("mqtt:bob", "ok"), ("api:eve", "forbidden")]
        assert rows[0]["request"] == {"charger_id": "CP", "action": "Reset", "payload": {"type": "Soft"}}


async def test_a_locked_database_fails_the_batch_once_and_the_writer_carries_on(tmp_path):
    async with Store(tmp_path, busy_timeout_ms=100) as store:
        other = sqlite3.connect(tmp_path / "evedge.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # someone else holds the write lock (a backup, a second process)
        try:
            results = await asyncio.gather(*(store.transactions.start("CP", n, 1, "T", T0, 0.0) for n in range(5)),
                                           return_exceptions=True)  # fmt: skip
            assert all(isinstance(r, sqlite3.OperationalError) and "locked" in str(r) for r in results)
            assert store.db.failed_batches == 1  # one attempt for the batch, not one per write
            assert store.health()["status"] == "error" and "locked" in store.health()["error"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        tx = await store.transactions.start("CP", 1, 1, "AFTER", T0, 0.0)
        assert tx.id_tag == "AFTER" and store.health()["status"] == "ok"


async def test_writing_to_a_closed_store_fails_at_once(tmp_path):
    store = await Store(tmp_path).open()
    await store.close()
    with pytest.raises(RuntimeError, match="not open"):
        await store.transactions.start("CP", 1, 1, "T", T0, 0.0)
