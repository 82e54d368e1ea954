"""The baseline for bench/ocpp_throughput.py: a bare central system written the `ocpp` library's way
(its documented pattern), answering the same messages, persisting nothing.

    bare_csms.py PORT            the library's defaults (each schema validation hops to a thread)
    bare_csms.py PORT --inloop   validation in the event loop, as the gateway does it
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus


def now() -> str:
    return datetime.now(UTC).isoformat()


class BareChargePoint(ChargePoint):
    @on(Action.boot_notification)
    def on_boot(self, **_):
        return call_result.BootNotification(current_time=now(), interval=300, status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self, **_):
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    def on_status(self, **_):
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, **_):
        return call_result.MeterValues()


async def handler(ws) -> None:
    charger = BareChargePoint(ws.request.path.rsplit("/", 1)[-1], ws)
    try:
        await charger.start()
    except websockets.ConnectionClosed:
        pass


async def main(port: int) -> None:
    async with websockets.serve(handler, "127.0.0.1", port, subprotocols=["ocpp1.6"]) as server:
        await server.serve_forever()


if __name__ == "__main__":
    if "--inloop" in sys.argv:
        import ocpp.messages

        ocpp.messages.ASYNC_VALIDATION = False
    asyncio.run(main(int(sys.argv[1])))
