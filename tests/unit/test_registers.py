"""Modbus register maps: the numbers in the words, the blocks a poll reads, the profiles we ship."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.registers import (
    MAX_READ,
    WIDTH,
    MapError,
    Register,
    RegisterMap,
    check_meter,
    load_profile,
    plan,
    profile_names,
)
from gateway.settings import ModbusTcpMeter, RegisterSettings

INTEGER_RANGE = {"u16": (0, 2**16 - 1), "i16": (-(2**15), 2**15 - 1), "u32": (0, 2**32 - 1),
                 "i32": (-(2**31), 2**31 - 1), "u64": (0, 2**64 - 1), "i64": (-(2**63), 2**63 - 1)}  # fmt: skip
ORDERS = st.sampled_from(["big", "little"])


@given(type_=st.sampled_from(sorted(INTEGER_RANGE)), data=st.data(), byte_order=ORDERS, word_order=ORDERS)
def test_integers_round_trip_in_every_order(type_, data, byte_order, word_order):
    value = data.draw(st.integers(*INTEGER_RANGE[type_]))
    register = Register("x", 0, "input", type_, byte_order=byte_order, word_order=word_order)
    words = register.encode(value)
    assert len(words) == WIDTH[type_] and all(0 <= w <= 0xFFFF for w in words)
    assert register.decode(words) == value


@given(value=st.floats(allow_nan=False, allow_infinity=False, width=32), byte_order=ORDERS, word_order=ORDERS)
def test_floats_round_trip(value, byte_order, word_order):
    for type_ in ("f32", "f64"):
        register = Register("x", 0, "holding", type_, byte_order=byte_order, word_order=word_order)
        assert register.decode(register.encode(value)) == value


def test_word_and_byte_order_as_meters_send_them():
    f32 = struct.unpack(">HH", struct.pack(">f", 230.5))
    assert Register("v", 0, "input", "f32").decode(list(f32)) == 230.5
    assert Register("v", 0, "input", "f32", word_order="little").decode(list(reversed(f32))) == 230.5
    # 123456789 Wh as a u32, least significant word first (Carlo Gavazzi style), then scaled to kWh*1000
    low_first = [123456789 & 0xFFFF, 123456789 >> 16]
    assert Register("e", 0, "input", "u32", word_order="little").decode(low_first) == 123456789
    assert Register("p", 0, "input", "i32", scale=0.1).decode([0xFFFF, 0xFF38]) == pytest.approx(-20.0)
    assert Register("f", 0, "input", "f32").decode([0x7FC0, 0]) is None  # NaN: 'not available'


def test_plan_reads_contiguous_runs_and_respects_the_limits():
    regs = [Register(f"r{a}", a, "input", "f32") for a in (0, 2, 4, 10, 12)] + [Register("h", 0, "holding", "u16")]
    assert [(b.kind, b.start, b.count) for b in plan(regs)] == [("holding", 0, 1), ("input", 0, 6), ("input", 10, 4)]
    assert [(b.start, b.count) for b in plan(regs, max_gap=4) if b.kind == "input"] == [(0, 14)]
    assert [(b.start, b.count) for b in plan(regs, max_count=4) if b.kind == "input"] == [(0, 4), (4, 2), (10, 4)]


@given(st.lists(st.tuples(st.integers(0, 400), st.sampled_from(list(WIDTH)), st.sampled_from(["input", "holding"])),
                max_size=30), st.integers(0, 5), st.integers(2, MAX_READ))  # fmt: skip
def test_every_register_is_in_exactly_one_block_within_the_limit(specs, max_gap, max_read):
    regs = [Register(f"r{n}", a, k, t) for n, (a, t, k) in enumerate(specs) if WIDTH[t] <= max_read]
    blocks = plan(regs, max_gap, max_read)
    placed = [r.name for b in blocks for r in b.registers]
    assert sorted(placed) == sorted(r.name for r in regs)
    for b in blocks:
        assert b.count <= max_read
        assert all(b.start <= r.address and r.end <= b.start + b.count and r.kind == b.kind for r in b.registers)


def test_overlaps_and_bad_entries_are_named():
    overlapping = RegisterMap((Register("a", 10, "input", "f32"), Register("b", 11, "input", "u16")))
    assert overlapping.problems("m") == ["m.b: overlaps a (input registers 10..11)"]
    meter = ModbusTcpMeter(id="m1", driver="modbus", host="h", registers={
        "a": RegisterSettings(address=0, kind="holding", type="u64"),
        "b": RegisterSettings(address=3, kind="holding", type="u16")})  # fmt: skip
    assert check_meter(meter) == ["meters.m1.registers.b: overlaps a (holding registers 0..3)"]
    unknown = ModbusTcpMeter(id="m2", driver="modbus", host="h", profile="no-such-meter")
    assert check_meter(unknown)[0].startswith("meters.m2.profile: no profile named 'no-such-meter' (there are: ")
    with pytest.raises(MapError):
        load_profile("../etc/evedge")


STANDARD = {"power_w", "energy_import_wh", "energy_export_wh", "frequency_hz"} | {
    f"{q}_l{n}" for q in ("power_w", "current_a", "voltage_v") for n in (1, 2, 3)}  # fmt: skip


@pytest.mark.parametrize("name", profile_names())
def test_every_shipped_profile_is_sound(name):
    profile = load_profile(name)
    names = {r.name for r in profile.registers}
    assert {"power_w", "energy_import_wh"} <= names, "a meter profile gives at least power and import energy"
    for point in names - STANDARD:
        assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", point), f"{point}: name points quantity_unit[_phase]"
    assert profile.source and profile.maker and profile.model
    assert all(b.count <= profile.max_read for b in profile.blocks)


def test_the_required_profiles_are_shipped():
    assert {"eastron-sdm630", "eastron-sdm72d", "carlo-gavazzi-em24", "schneider-pm5100", "schneider-pm5300",
            "socomec-diris-a40", "janitza-umg604"} <= set(profile_names())  # fmt: skip
