"""OCPP-J framing: every possible frame is classified, never raised on; bad ones get a well-formed CALLERROR."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ocpp import frames
from drivers.ocpp.frames import V16, V201

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@given(raw=st.text(max_size=200) | st.binary(max_size=50), version=st.sampled_from([V16, V201]))
def test_any_text_is_classified_without_raising(raw, version):
    check_frame(frames.parse(raw, version), version)


@given(message=st.lists(json_values, max_size=6), version=st.sampled_from([V16, V201]))
def test_any_json_array_is_classified_without_raising(message, version):
    check_frame(frames.parse(json.dumps(message), version), version)


def check_frame(frame, version):
    assert isinstance(frame, (frames.Call, frames.CallResult, frames.CallError, frames.Malformed))
    if isinstance(frame, frames.Malformed) and frame.reply is not None:
        reply = json.loads(frame.reply)
        assert reply[0] == 4 and isinstance(reply[1], str) and len(reply[1]) <= frames.MAX_ID_LENGTH
        assert reply[2] in VALID_CODES[version]
        assert len(reply[3]) <= 255 and reply[4] == {}


VALID_CODES = {
    V16: {"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError", "FormationViolation",
          "PropertyConstraintViolation", "OccurenceConstraintViolation", "TypeConstraintViolation", "GenericError"},
    V201: {"FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported", "NotImplemented",
           "NotSupported", "OccurrenceConstraintViolation", "PropertyConstraintViolation", "ProtocolError",
           "RpcFrameworkError", "SecurityError", "TypeConstraintViolation"},
}  # fmt: skip


def test_a_call_is_read():
    assert frames.parse('[2, "19223201", "Heartbeat", {}]', V16) == frames.Call("19223201", "Heartbeat", {})


def test_answers_are_read():
    assert frames.parse('[3, "a", {"status": "Accepted"}]', V201) == frames.CallResult("a", {"status": "Accepted"})
    assert frames.parse('[4, "a", "NotSupported", "no", {}]', V201) == frames.CallError("a", "NotSupported", "no", {})


def test_a_broken_answer_is_never_answered():
    for raw in ('[3, "a"]', "[3, 1, {}]", '[4, "a", 5, "", {}]', '[4, "a"]'):
        frame = frames.parse(raw, V16)
        assert isinstance(frame, frames.Malformed) and frame.reply is None


@pytest.mark.parametrize("version, code", [(V16, "FormationViolation"), (V201, "FormatViolation")])
def test_error_codes_are_spelled_per_version(version, code):
    assert frames.error_code("FormatViolation", version) == code
    assert json.loads(frames.call_error("x", "FormatViolation", "d", version))[2] == code


def test_occurrence_is_misspelled_in_16_only():
    assert frames.error_code("OccurrenceConstraintViolation", V16) == "OccurenceConstraintViolation"
    assert frames.error_code("OccurenceConstraintViolation", V201) == "OccurrenceConstraintViolation"


def test_unknown_and_unsupported_actions():
    handled = {"Heartbeat"}
    assert frames.unknown_action(frames.Call("1", "Heartbeat", {}), V16, handled) is None
    assert json.loads(frames.unknown_action(frames.Call("1", "Frobnicate", {}), V16, handled))[2] == "NotImplemented"
    assert json.loads(frames.unknown_action(frames.Call("1", "ReserveNow", {}), V16, handled))[2] == "NotSupported"
    # TransactionEvent is a 2.0.1 action, not a 1.6 one.
    assert json.loads(frames.unknown_action(frames.Call("1", "TransactionEvent", {}), V16, handled))[2] == (
        "NotImplemented"
    )


def test_directions_partition_each_versions_actions():
    for version in (V16, V201):
        assert frames.FROM_CHARGER[version] & frames.TO_CHARGER[version] == {"DataTransfer"}
    assert "GetConfiguration" in frames.TO_CHARGER[V16] and "GetVariables" in frames.TO_CHARGER[V201]
    assert "TransactionEvent" in frames.FROM_CHARGER[V201]


def test_nan_infinity_and_overflowing_numbers_are_not_json():
    for raw in ('[2, "a", "MeterValues", {"v": NaN}]', '[2, "a", "X", {"v": -Infinity}]', '[2, "a", "X", {"v": 1e999}]'):
        frame = frames.parse(raw, V201)
        assert isinstance(frame, frames.Malformed) and json.loads(frame.reply)[2] == "RpcFrameworkError"
