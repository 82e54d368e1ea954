"""asyncua's session, with the gateway's checks at CreateSession and ActivateSession and the writes and method calls
that act routed through the door."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from asyncua import ua
from asyncua.server.internal_session import InternalSession

from bridges.opcua_server.methods import caller
from bridges.opcua_server.users import GatewayUser
from gateway.auth import Role

if TYPE_CHECKING:
    from bridges.opcua_server.server import OpcuaServer

log = logging.getLogger(__name__)


class Session(InternalSession):
    """A client's session: checks the channel at activation, routes writes and method calls through the door."""

    def __init__(self, bridge: OpcuaServer, *args: Any, **kwargs: Any) -> None:
        self.bridge = bridge
        super().__init__(*args, **kwargs)

    async def create_session(self, params: ua.CreateSessionParameters,
                             sockname: tuple[str, int] | None = None) -> ua.CreateSessionResult:  # fmt: skip
        await self.bridge.security.before_session()
        return await super().create_session(params, sockname)

    def activate_session(self, params: ua.ActivateSessionParameters,
                         peer_certificate: bytes | None) -> ua.ActivateSessionResult:  # fmt: skip
        self.bridge.security.check_channel(peer_certificate, params.UserIdentityToken)
        result = super().activate_session(params, peer_certificate)
        self.bridge.sessions.add(self)
        user = self.user
        log.info("OPC UA session activated user=%s role=%s peer=%s", user.name,
                 getattr(user, "gateway_role", Role.guest).name, self.name)  # fmt: skip
        return result

    async def close_session(self, delete_subs: bool = True) -> None:
        self.bridge.sessions.discard(self)
        await super().close_session(delete_subs)

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        door = self.bridge.door
        if not any(door.routes(item) for item in params.NodesToWrite):
            return await super().write(params)
        results = []
        for item in params.NodesToWrite:
            if door.routes(item):
                results.append(await door.write_limit(item, self.user))
            else:
                results.extend(await super().write(ua.WriteParameters(NodesToWrite=[item])))
        return results

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        token = caller.set(self.user if isinstance(self.user, GatewayUser) else None)
        try:
            return await super().call(params)
        finally:
            caller.reset(token)
