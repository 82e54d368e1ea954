"""Password hashes, Basic auth headers, roles."""

from __future__ import annotations

import base64

import pytest

from gateway.auth import (
    Role,
    check_password_hash_format,
    hash_password,
    parse_basic_auth,
    password_forms,
    same_password,
    verify_password,
)


def test_a_hash_verifies_its_password_only():
    stored = hash_password("the right one")
    assert verify_password("the right one", stored)
    assert not verify_password("the wrong one", stored)
    assert hash_password("the right one") != stored  # salted


def test_damaged_hashes_are_refused_with_a_reason():
    for bad in ("", "plain", "scrypt$1$8$1$AAAA$BBBB", "scrypt$16384$8$1$!!$!!", "bcrypt$x$y$z$a$b"):
        with pytest.raises(ValueError):
            check_password_hash_format(bad)
        assert not verify_password("x", bad)


def test_basic_auth_header():
    header = "Basic " + base64.b64encode(b"CP01:pa:ss").decode()
    assert parse_basic_auth(header) == ("CP01", b"pa:ss")
    assert parse_basic_auth("basic " + base64.b64encode(b"CP01:x").decode()) == ("CP01", b"x")
    raw_key = bytes.fromhex("0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF")  # a 1.6 AuthorizationKey, sent raw
    assert parse_basic_auth("Basic " + base64.b64encode(b"CP01:" + raw_key).decode()) == ("CP01", raw_key)
    for bad in (None, "", "Bearer abc", "Basic", "Basic ###", "Basic " + base64.b64encode(b"nocolon").decode(),
                "Basic " + base64.b64encode(b"\xff\xfe:x").decode()):  # fmt: skip
        assert parse_basic_auth(bad) is None


def test_a_16_authorization_key_matches_in_text_or_raw():
    key = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"
    assert same_password(key.encode(), key)  # sent as its hex text
    assert same_password(bytes.fromhex(key), key)  # sent raw, as the whitepaper has it
    assert not same_password(bytes.fromhex(key)[:-1], key)
    assert same_password(b"a plain password", "a plain password")
    assert password_forms(bytes.fromhex(key)) == [key.encode(), key.lower().encode()]
    assert password_forms(b"text") == [b"text"]


def test_roles_are_ordered():
    assert Role.guest < Role.operator < Role.admin
    assert Role.parse("operator") is Role.operator
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("root")


def test_the_audit_never_sees_a_secret():
    from gateway.commands import MASK, OcppRequest, redact

    change = OcppRequest("CP", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "00112233"}).describe()
    assert change["payload"] == {"key": "AuthorizationKey", "value": MASK}
    assert OcppRequest("CP", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}).describe()[
        "payload"]["value"] == "60"  # fmt: skip
    variables = redact({"setVariableData": [
        {"attributeValue": "s3cret-s3cret-s3", "component": {"name": "SecurityCtrlr"},
         "variable": {"name": "BasicAuthPassword"}},
        {"attributeValue": "30", "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
    ]})  # fmt: skip
    assert [v["attributeValue"] for v in variables["setVariableData"]] == [MASK, "30"]
    network = redact({"connectionData": {"apn": {"apn": "internet", "apnPassword": "pw"},
                                         "vpn": {"server": "vpn", "user": "u", "password": "pw", "key": "k"}}})  # fmt: skip
    assert network["connectionData"]["apn"] == {"apn": "internet", "apnPassword": MASK}
    assert network["connectionData"]["vpn"]["password"] == MASK and network["connectionData"]["vpn"]["key"] == MASK
    assert redact({"key": ["AuthorizationKey"]}) == {"key": ["AuthorizationKey"]}  # a GetConfiguration question


def test_configuring_a_charger_takes_an_admin():
    from gateway.commands import OcppRequest

    assert OcppRequest("CP", "ChangeConfiguration").role_needed() is Role.admin
    assert OcppRequest("CP", "SetNetworkProfile").role_needed() is Role.admin
    assert OcppRequest("CP", "Reset").role_needed() is Role.operator
    assert OcppRequest("CP", "GetConfiguration").role_needed() is Role.operator
