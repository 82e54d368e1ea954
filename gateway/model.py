"""The site topology: site -> group -> charger -> EVSE -> connector.

Built from the settings; chargers accepted with ``ocpp.auto_accept`` and EVSEs a charger reports beyond its
configured count are added as they appear, so everything above the drivers sees one version-blind tree.
OCPP 1.6 has no EVSE: its connector n is EVSE n with connector 1 (the OCPP 2.0.1 Part 4 mapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.settings import ChargerSettings, Settings

# Ids come from the chargers: bound them, so a charger cannot grow the model (and the process image) at will.
MAX_EVSES = 32
MAX_CONNECTORS = 8


@dataclass
class Evse:
    id: int
    connectors: set[int] = field(default_factory=lambda: {1})
    meter: str | None = None  # a meter that measures this EVSE


@dataclass
class Charger:
    id: str
    max_w: float
    phases: int
    priority: int
    configured: bool  # False when it joined through ocpp.auto_accept
    evses: dict[int, Evse] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    meter: str | None = None  # a meter that measures the whole charger
    phase_rotation: str = "L1L2L3"  # which site phases its L1, L2, L3 are

    @classmethod
    def from_settings(cls, s: ChargerSettings) -> Charger:
        evses = {n: Evse(n, meter=s.evse_meters.get(str(n))) for n in range(1, s.evses + 1)}
        return cls(s.id, s.max_w, s.phases, s.priority, True, evses, meter=s.meter, phase_rotation=s.phase_rotation)

    def metered(self, evse: int) -> bool:
        """Whether a meter (not the charger's MeterValues) says what flows through this EVSE (0: the charger)."""
        if evse == 0:
            return self.meter is not None
        found = self.evses.get(evse)
        return (found is not None and found.meter is not None) or (self.meter is not None and len(self.evses) == 1)


@dataclass
class Group:
    id: str
    limit_w: float | None
    chargers: list[str]
    parent: str | None = None


@dataclass
class Meter:
    id: str
    driver: str


@dataclass
class Site:
    id: str
    limit_w: float | None
    voltage_v: float
    phases: int
    groups: dict[str, Group]
    chargers: dict[str, Charger]
    meters: dict[str, Meter] = field(default_factory=dict)
    grid_meter: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Site:
        chargers = {c.id: Charger.from_settings(c) for c in settings.chargers}
        groups = {g.id: Group(g.id, g.limit_w, list(g.chargers), g.parent) for g in settings.groups}
        for group in groups.values():
            for cid in group.chargers:
                chargers[cid].groups.append(group.id)
        meters = {m.id: Meter(m.id, m.driver) for m in settings.meters}
        s = settings.site
        return cls(settings.gateway.id, s.limit, s.voltage_v, s.phases, groups, chargers, meters, s.grid_meter)

    def add_charger(self, charger_id: str) -> Charger:
        """A charger that is not in the config (auto-accepted): rated by defaults until configured."""
        default = ChargerSettings(id=charger_id)
        charger = self.chargers.get(charger_id)
        if charger is None:
            charger = Charger(charger_id, default.max_w, default.phases, default.priority, False, {1: Evse(1)})
            self.chargers[charger_id] = charger
        return charger

    @staticmethod
    def check_connector(evse: int, connector: int | None = 1, *, charger_level: bool = True) -> None:
        """ValueError for ids no charger has: EVSE 0 (the charger itself, where allowed) to MAX_EVSES,
        connector 1 to MAX_CONNECTORS."""
        if not (0 if charger_level else 1) <= evse <= MAX_EVSES:
            raise ValueError(f"EVSE {evse} is out of range (1 to {MAX_EVSES})")
        if connector is not None and not (evse == 0 or 1 <= connector <= MAX_CONNECTORS):
            raise ValueError(f"connector {connector} is out of range (1 to {MAX_CONNECTORS})")

    def see_connector(self, charger_id: str, evse: int, connector: int = 1) -> bool:
        """Record that a charger has this EVSE/connector; True when it was new to the model."""
        self.check_connector(evse, connector, charger_level=False)
        charger = self.chargers.get(charger_id) or self.add_charger(charger_id)
        known = charger.evses.get(evse)
        if known is None:
            charger.evses[evse] = Evse(evse, {connector})
            return True
        if connector not in known.connectors:
            known.connectors.add(connector)
            return True
        return False
