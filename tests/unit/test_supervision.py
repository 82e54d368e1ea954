"""A part that breaks is started again; the gateway around it goes on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway import app


async def test_a_failing_part_is_started_again_until_it_runs(monkeypatch, caplog):
    monkeypatch.setattr(app, "SUPERVISOR_FIRST_DELAY_S", 0.001)
    runs = []
    running = asyncio.Event()

    class ProtocolError(BaseException):  # like bacpypes3's errors: not an Exception
        pass

    async def part() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("max() arg is an empty sequence")
        if len(runs) == 2:
            raise ProtocolError("no-response")
        running.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(app.supervised("meter", part))
    await asyncio.wait_for(running.wait(), 5)
    assert len(runs) == 3 and not task.done()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR][:2] == [
        "part failed, starting it again in 0.001 s part=meter", "part failed, starting it again in 0.002 s part=meter"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_part_that_ends_by_itself_is_not_started_again():
    runs = []

    async def part() -> None:
        runs.append(1)

    await asyncio.wait_for(app.supervised("mirror", part), 5)
    assert runs == [1]


async def test_a_stop_request_a_library_swallowed_is_still_honoured():
    from gateway.tasks import raise_if_cancelled

    rounds = []
    inside = asyncio.Event()

    async def loop_calling_a_careless_library() -> None:
        while True:
            try:  # what Python 3.11's wait_for can do: the CancelledError never reaches us
                inside.set()
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
            rounds.append(1)
            raise_if_cancelled()

    task = asyncio.create_task(loop_calling_a_careless_library())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert rounds == [1]
