"""Meters attached to chargers: what the meter measures is what flows through the charger.

A charger that sends no (or poor) MeterValues gets its power and currents from a meter on its supply
(``[[chargers]] meter`` for the whole charger -- and its EVSE when it has one -- or ``evse_meters`` per EVSE).
The mirrored points keep the meter's timestamp and quality.
"""

from __future__ import annotations

from gateway.model import Site
from gateway.points import FLOW, ProcessImage, charger_point, evse_point



def attachments(site: Site) -> dict[str, list[str]]:
    """Meter id -> the point prefixes (chargers/CP01/, chargers/CP01/evse/1/) its values flow into."""
    targets: dict[str, list[str]] = {}
    for charger in site.chargers.values():
        if charger.meter:
            targets.setdefault(charger.meter, []).append(charger_point(charger.id, ""))
            if len(charger.evses) == 1:
                targets[charger.meter].append(evse_point(charger.id, next(iter(charger.evses)), ""))
        for evse in charger.evses.values():
            if evse.meter:
                targets.setdefault(evse.meter, []).append(evse_point(charger.id, evse.id, ""))
    return targets


async def mirror(site: Site, image: ProcessImage) -> None:
    """Follow the attached meters' values into their chargers' points, until cancelled."""
    targets = attachments(site)
    if not targets:
        return
    feed = image.feed("meters/")
    try:
        while True:
            for name, point in (await feed.get()).items():
                _, meter_id, leaf = name.split("/", 2)
                if leaf not in FLOW or leaf == "current_a":  # current_a: the highest phase, worked out below
                    continue
                for prefix in targets.get(meter_id, ()):
                    image.set(prefix + leaf, point.value, point.ts, point.quality)
                    if leaf.startswith("current_a_"):
                        phases = [image.get(prefix + f"current_a_l{n}") for n in (1, 2, 3)]
                        known = [p.value for p in phases if p is not None and p.value is not None]
                        if known:  # a meter may not know a phase yet (NaN, a refused register)
                            image.set(prefix + "current_a", max(known), point.ts, point.quality)
    finally:
        feed.close()
