"""The README's picture of the console, taken with the e2e helpers on the simulated site (never drawn by hand):

    .venv/bin/python -m tests.e2e.readme_screenshot      # writes docs/console-overview.png
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from gateway.auth import Role
from gateway.sim.ev import Ev
from tests.conftest import ROOT, eventually
from tests.e2e.helpers import chromium, console_site, log_in, open_context, shot

OUT = ROOT / "docs" / "console-overview.png"


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with console_site(Path(folder)) as site:
            for charger_id, evse, badge, soc in [("CP16", 1, "04A2-7731", 35.0), ("CP16", 2, "04B9-1204", 62.0),
                                                 ("CP201", 1, "FLEET-017", 18.0)]:  # fmt: skip
                sim = site.chargers[charger_id]
                await sim.plug_in(evse, Ev(capacity_wh=75000, soc=soc, max_w=11000, phases=3, id_tag=badge))
                await sim.start_session(evse)
            await eventually(lambda: len(site.gateway.app.loadcap.allocation) == 3, timeout=20)
            await asyncio.sleep(8)  # the load cap ramps the cars up; the figures settle
            async with chromium() as browser:
                context = await open_context(browser, site)
                page = await log_in(context, Role.operator)
                await page.wait_for_timeout(1500)
                path = await shot(page, "readme-overview")
                await context.close()
    OUT.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
