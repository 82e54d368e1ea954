"""The outbox on a real SQLite file: messages in the record's own transaction, gap-free seq, counters that
survive a crash, a budget that drops telemetry and never events, listeners told only what is committed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

from gateway.store import Store
from gateway.store.outbox import EVENTS, TELEMETRY

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


async def test_events_ride_in_the_records_transaction_with_gap_free_seq(tmp_path):
    async with Store(tmp_path) as store:
        store.outbox.enabled = True
        listener = store.events.listen()
        tx = await store.transactions.start("CP", 1, 1, "TAG", T0, 1000.0)
        await store.outbox.append(TELEMETRY, "telemetry", {"points": {"site/limit_w": [1, "t", "good"]}})
        await store.transactions.stop(tx.id, T0, 2000.0, "Local")
        await store.transactions.stop(tx.id, T0, 2500.0, "Local")  # a repeated stop tells nothing new
        await store.chargers.status("CP", 1, 1, "Charging", None, None, T0)
        await store.chargers.status("CP", 1, 1, "Charging", None, None, T0)  # no change, no event
        messages = await store.outbox.after(0)
        assert [m.seq for m in messages] == [1, 2, 3, 4]
        assert [(m.stream, m.kind) for m in messages] == [(EVENTS, "transaction_started"), (TELEMETRY, "telemetry"),
                                                         (EVENTS, "transaction_stopped"), (EVENTS, "status")]
        envelope = json.loads(messages[2].envelope())
        assert envelope["seq"] == 3 and envelope["data"]["energy_wh"] == 1000.0 and len(envelope["id"]) == 32
        assert len({m.id for m in messages}) == 4
        assert [e.kind for e in await listener.get()] == ["transaction_started", "transaction_stopped", "status"]

        await store.outbox.acknowledge([1, 2])
        totals = await store.outbox.totals()
        assert (totals.messages, totals.dropped) == (2, 0)
        assert totals.bytes == sum(len(m.payload.encode()) for m in messages[2:])
        await store.outbox.append(EVENTS, "alarm", {"n": 1})
        assert (await store.outbox.after(2))[-1].seq == 5  # numbers are never handed out twice


async def test_the_budget_drops_the_oldest_telemetry_and_never_an_event(tmp_path):
    async with Store(tmp_path) as store:
        store.outbox.enabled = True
        for n in range(50):
            await store.outbox.append(TELEMETRY, "telemetry", {"points": {"x": [n, "t", "good"]}, "pad": "." * 200})
            if n % 10 == 0:
                await store.events.record("allocation", {"n": n})
        before = await store.outbox.totals()
        dropped = await store.outbox.drop_telemetry(2000)
        after = await store.outbox.totals()
        assert dropped > 0 and after.dropped == dropped and after.bytes <= 2000
        left = await store.outbox.after(0, 1000)
        assert [m.kind for m in left].count("allocation") == 5  # every event is still there
        kept = [json.loads(m.payload)["points"]["x"][0] for m in left if m.stream == TELEMETRY]
        assert kept == list(range(50 - len(kept), 50))  # the newest telemetry stayed
        assert after.messages == before.messages - dropped
        # Only events left over budget: nothing more can go.
        assert await store.outbox.drop_telemetry(0) == len(kept)
        assert await store.outbox.drop_telemetry(0) == 0
        assert len(await store.outbox.after(0, 1000)) == 5


async def test_a_rolled_back_write_tells_no_listener_and_queues_nothing(tmp_path):
    async with Store(tmp_path) as store:
        store.outbox.enabled = True
        listener = store.events.listen()

        async def failing(conn):
            await store.events.within(conn, "ghost", {})
            raise RuntimeError("the write fails after the event")

        try:
            await store.db.write(failing)
        except RuntimeError:
            pass
        await store.events.record("real", {})
        assert [e.kind for e in await listener.get()] == ["real"]
        assert [m.kind for m in await store.outbox.after(0)] == ["real"]
        assert (await store.outbox.totals()).messages == 1


async def test_nothing_queues_while_no_bridge_takes_messages(tmp_path):
    async with Store(tmp_path) as store:
        await store.transactions.start("CP", 1, 1, "TAG", T0, 1000.0)
        assert await store.outbox.after(0) == [] and (await store.outbox.totals()).messages == 0
        assert [e["kind"] for e in await store.events.query()] == ["transaction_started"]


WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from gateway.store import Store
    from gateway.store.outbox import TELEMETRY

    async def main():
        async with Store(Path(sys.argv[1])) as store:
            store.outbox.enabled = True
            n = 0
            while True:
                await store.outbox.append(TELEMETRY, "telemetry", {"n": n})
                await store.events.record("tick", {"n": n})
                print(n, flush=True)  # both of round n are committed
                n += 1

    asyncio.run(main())
""")


async def test_sigkill_while_writing_loses_nothing_committed_and_keeps_counters_exact(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))  # fmt: skip
    committed = -1
    assert process.stdout is not None
    while committed < 200:
        committed = int(await asyncio.to_thread(process.stdout.readline))
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    async with Store(tmp_path) as store:
        messages = await store.outbox.after(0, 100000)
        seqs = [m.seq for m in messages]
        assert seqs == list(range(1, len(seqs) + 1))  # gap-free, from 1
        ticks = [json.loads(m.payload)["n"] for m in messages if m.kind == "tick"]
        assert ticks == list(range(len(ticks))) and len(ticks) >= committed + 1
        totals = await store.outbox.totals()
        assert totals.messages == len(messages)
        assert totals.bytes == sum(len(m.payload.encode()) for m in messages)
