"""Modbus register maps, without I/O: what the words on the wire mean, and how to read a map in few requests.

A map comes from a profile file (``drivers/profiles/NAME.toml``, the maker's table as data), a meter's inline
``[meters.registers]``, or both (the inline entries added to, or replacing, the profile's). Registers are
grouped into blocks -- runs of registers one request can read -- so a poll costs the fewest requests.
"""

from __future__ import annotations

import math
import struct
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.settings import RegisterSettings, format_errors

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
MAX_READ = 125  # registers one read request may ask for (Modbus application protocol)
WIDTH = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "u64": 4, "i64": 4, "f32": 2, "f64": 4}
_FORMAT = {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "u64": "Q", "i64": "q", "f32": "f", "f64": "d"}


class MapError(Exception):
    """A map that cannot be used; ``problems`` holds one 'key: what is wrong' line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Register:
    name: str
    address: int
    kind: str  # input, holding
    type: str
    scale: float = 1.0
    offset: float = 0.0
    byte_order: str = "big"
    word_order: str = "big"
    unit: str | None = None

    @property
    def width(self) -> int:
        return WIDTH[self.type]

    @property
    def end(self) -> int:
        return self.address + self.width

    def decode(self, words: list[int]) -> float | None:
        """The value these registers hold, in the point's unit; None for a float that is NaN or infinite
        (meters use them for 'not available')."""
        (raw,) = struct.unpack(">" + _FORMAT[self.type], self._bytes(words))
        if self.scale == 1 and self.offset == 0:
            value = raw  # a 64-bit counter stays exact: a float would round it past 2**53
        else:
            value = raw * self.scale + self.offset
        return value if math.isfinite(value) else None

    def encode(self, value: float) -> list[int]:
        """The registers a meter would hold for this value (for simulated meters and tests)."""
        raw: float | int = value if self.scale == 1 and self.offset == 0 else (value - self.offset) / self.scale
        if self.type[0] != "f":
            raw = round(raw)
        data = struct.pack(">" + _FORMAT[self.type], raw)
        words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        if self.word_order == "little":
            words.reverse()
        if self.byte_order == "little":
            words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
        return words

    def _bytes(self, words: list[int]) -> bytes:
        if self.byte_order == "little":
            words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
        if self.word_order == "little":
            words = list(reversed(words))
        return b"".join(w.to_bytes(2, "big") for w in words)


@dataclass(frozen=True)
class Block:
    """Registers read with one request: ``count`` registers from ``start``."""

    kind: str
    start: int
    count: int
    registers: tuple[Register, ...]

    def decode(self, words: list[int]) -> dict[str, float | None]:
        return {r.name: r.decode(words[r.address - self.start : r.end - self.start]) for r in self.registers}


@dataclass(frozen=True)
class RegisterMap:
    registers: tuple[Register, ...]
    max_gap: int = 0
    max_read: int = MAX_READ
    maker: str | None = None
    model: str | None = None
    source: str | None = None
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(plan(self.registers, self.max_gap, self.max_read))

    def words(self, values: dict[str, float]) -> dict[tuple[str, int], int]:
        """The registers a meter with these point values holds: (kind, address) -> word."""
        held = {}
        for r in self.registers:
            if values.get(r.name) is not None:
                for k, word in enumerate(r.encode(values[r.name])):
                    held[(r.kind, r.address + k)] = word
        return held

    def spans(self) -> dict[str, tuple[int, int]]:
        """The address span each kind of register occupies: kind -> (first, count)."""
        found = {}
        for kind in ("input", "holding"):
            mine = [r for r in self.registers if r.kind == kind]
            if mine:
                first = min(r.address for r in mine)
                found[kind] = (first, max(r.end for r in mine) - first)
        return found

    def problems(self, where: str) -> list[str]:
        """Overlapping registers, registers past the end of the address space."""
        found = []
        if not 1 <= self.max_read <= MAX_READ:
            found.append(f"{where}: max_read must be 1 to {MAX_READ}, not {self.max_read}")
        for kind in ("holding", "input"):
            previous: Register | None = None
            for r in sorted((r for r in self.registers if r.kind == kind), key=lambda r: r.address):
                if r.end > 65536:
                    found.append(f"{where}.{r.name}: {r.type} at {r.address} runs past register 65535")
                if r.width > self.max_read:
                    found.append(f"{where}.{r.name}: {r.type} needs {r.width} registers, more than max_read")
                if previous is not None and r.address < previous.end:
                    found.append(f"{where}.{r.name}: overlaps {previous.name} ({kind} registers "
                                 f"{previous.address}..{previous.end - 1})")  # fmt: skip
                if previous is None or r.end > previous.end:
                    previous = r
        return found


def plan(registers: tuple[Register, ...] | list[Register], max_gap: int = 0,
         max_count: int = MAX_READ) -> list[Block]:  # fmt: skip
    """Group registers into the fewest reads: same kind, at most `max_gap` unused registers between two,
    at most `max_count` registers a read."""
    blocks: list[Block] = []
    for kind in ("holding", "input"):
        run: list[Register] = []
        for r in sorted((r for r in registers if r.kind == kind), key=lambda r: r.address):
            if run and r.address - max(x.end for x in run) <= max_gap and r.end - run[0].address <= max_count:
                run.append(r)
                continue
            if run:
                blocks.append(_block(run))
            run = [r]
        if run:
            blocks.append(_block(run))
    return blocks


def _block(run: list[Register]) -> Block:
    start = run[0].address
    return Block(run[0].kind, start, max(r.end for r in run) - start, tuple(run))


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.toml"))


def load_profile(name: str) -> RegisterMap:
    """A profile from drivers/profiles; MapError names what is wrong with it."""
    path = PROFILES / f"{name}.toml"
    if not name.replace("-", "").replace("_", "").isalnum() or not path.is_file():
        raise MapError([f"no profile named {name!r} (there are: {', '.join(profile_names())})"])
    with open(path, "rb") as f:
        data = tomllib.load(f)
    head = data.get("profile", {})
    registers = _registers(data.get("registers", {}), head.get("byte_order", "big"), head.get("word_order", "big"),
                           f"profile {name}: registers")  # fmt: skip
    found = RegisterMap(tuple(registers), int(head.get("max_gap", 0)), int(head.get("max_read", MAX_READ)),
                        head.get("maker"), head.get("model"), head.get("source"), head)  # fmt: skip
    problems = found.problems(f"profile {name}: registers")
    if problems:
        raise MapError(problems)
    return found


def meter_map(meter: Any) -> RegisterMap:
    """The map of a configured Modbus meter: its profile, with its inline registers added or replacing."""
    base = load_profile(meter.profile) if meter.profile else RegisterMap((), meter.max_gap)
    inline = {
        name: _register(name, entry, meter.byte_order, meter.word_order) for name, entry in meter.registers.items()
    }
    registers = tuple(r for r in base.registers if r.name not in inline) + tuple(inline.values())
    merged = RegisterMap(registers, base.max_gap if meter.profile else meter.max_gap, base.max_read, base.maker,
                         base.model, base.source, base.info)  # fmt: skip
    problems = merged.problems(f"meters.{meter.id}.registers")
    if problems:
        raise MapError(problems)
    return merged


def check_meter(meter: Any) -> list[str]:
    """Config problems of one Modbus meter, for check-config."""
    try:
        meter_map(meter)
    except MapError as e:
        return [p if p.startswith("meters.") else f"meters.{meter.id}.profile: {p}" for p in e.problems]
    return []


def _registers(entries: dict[str, Any], byte_order: str, word_order: str, where: str) -> list[Register]:
    registers, problems = [], []
    for name, entry in entries.items():
        try:
            registers.append(_register(name, RegisterSettings.model_validate(entry), byte_order, word_order))
        except ValidationError as e:
            problems += [f"{where}.{name}.{line}" for line in format_errors(e)]
    if problems:
        raise MapError(problems)
    return registers


def _register(name: str, entry: RegisterSettings, byte_order: str, word_order: str) -> Register:
    return Register(name, entry.address, entry.kind, entry.type, entry.scale, entry.offset,
                    entry.byte_order or byte_order, entry.word_order or word_order, entry.unit)  # fmt: skip
