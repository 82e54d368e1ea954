"""Password hashes, Basic auth headers, roles."""

from __future__ import annotations

import base64

import pytest

from gateway.auth import Role, check_password_hash_format, hash_password, parse_basic_auth, verify_password


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
    assert parse_basic_auth(header) == ("CP01", "pa:ss")
    assert parse_basic_auth("basic " + base64.b64encode(b"CP01:x").decode()) == ("CP01", "x")
    for bad in (None, "", "Bearer abc", "Basic", "Basic ###", "Basic " + base64.b64encode(b"nocolon").decode(),
                "Basic " + base64.b64encode(b"\xff\xfe:x").decode()):  # fmt: skip
        assert parse_basic_auth(bad) is None


def test_roles_are_ordered():
    assert Role.guest < Role.operator < Role.admin
    assert Role.parse("operator") is Role.operator
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("root")
