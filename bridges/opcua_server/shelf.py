"""asyncua's standard address space (some 6,000 type and Server nodes) kept on disk, read node by node as needed.

asyncua builds those nodes in Python at every start: over a second of CPU and some 50 MB on a laptop, several times
the time on a Pi, and every full garbage collection walks them after. From a shelf (asyncua's own, made for slow
devices) only the nodes something asks for are read, and kept. The shelf (20-30 MB, by the dbm) is made at first
start in ``{state_dir}/opcua/aspace-{asyncua version}/``, so that an asyncua upgrade makes a new one; older ones are
removed then.
"""

from __future__ import annotations

import asyncio
import dbm
import logging
import os
import shutil
from pathlib import Path

import asyncua
from asyncua import Server
from asyncua.server.address_space import AddressSpace

log = logging.getLogger(__name__)

PREFIX = "aspace-"
# The shelf in its folder (nodes, nodes.db, or nodes.dat and nodes.dir, by the dbm Python has), named without the
# version: asyncua looks for name.db with Path.with_suffix, which takes 2.1.0's ".0" for a suffix.
NODES = "nodes"


def shelf_folder(folder: Path) -> Path:
    return folder / f"{PREFIX}{asyncua.__version__}"


async def init(server: Server, folder: Path) -> None:
    """``server.init`` with the standard nodes from the shelf, or built and shelved when there is none yet."""
    kept = shelf_folder(folder)
    if kept.is_dir():
        try:
            await server.init(kept / NODES)
        except Exception:
            # One that cannot be read (a torn file, a dbm this Python lacks) is made again at the next start.
            shutil.rmtree(kept, ignore_errors=True)
            raise
        return
    for old in folder.glob(f"{PREFIX}*"):  # an older asyncua's, or one a start cut short left half made
        shutil.rmtree(old, ignore_errors=True)
    making = kept.with_name(f"{kept.name}.making")
    making.mkdir(parents=True)
    await server.init(making / NODES)  # asyncua finds no shelf there: it builds the nodes and shelves them
    await asyncio.to_thread(_sync, making)
    making.rename(kept)  # whole or not at all: the folder is there only once the shelf is complete, on disk
    log.info("OPC UA standard address space shelved for the next starts: %s", kept)


def _sync(folder: Path) -> None:
    """On disk before the folder is renamed: a power cut at the first start must not leave a torn shelf to load."""
    for path in folder.iterdir():
        with path.open("rb") as file:
            os.fsync(file.fileno())


def load(aspace: AddressSpace, shelf: Path | None) -> bool:
    """Load a shelf, whichever dbm made it. asyncua looks only for the file itself or with .db (GNU dbm, Berkeley
    DB): on a Python with neither (dbm.dumb writes .dat and .dir files) it would shelve the nodes at every start and
    never load them."""
    if shelf is None or not dbm.whichdb(str(shelf)):
        return False
    aspace.load_aspace_shelf(shelf)
    return True
