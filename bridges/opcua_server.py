"""OPC UA server for the BMS/SCADA (being built: see issue 5)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.commands import Commands
from gateway.model import Site
from gateway.points import ProcessImage
from gateway.settings import Settings
from gateway.store import Store


class OpcuaServer:
    def __init__(self, settings: Settings, site: Site, image: ProcessImage, commands: Commands, store: Store) -> None:
        assert settings.opcua is not None
        self.settings = settings
        self.site = site
        self.image = image
        self.commands = commands
        self.store = store

    async def run(self) -> None:
        await asyncio.Event().wait()

    def health(self) -> dict[str, Any]:
        return {"status": "starting"}
