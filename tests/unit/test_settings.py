"""Settings: the environment over the file, and the shipped file documenting every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.settings import ConfigError, Settings, load_settings, split_listen

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def models_of(annotation: object) -> list[type[BaseModel]]:
    """The settings models a field holds: itself, the item of a list, every kind of a union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in models_of(arg)]


def test_every_key_is_documented_in_the_shipped_config():
    text = (ROOT / "etc/evedge.toml").read_text()
    for section, field in Settings.model_fields.items():
        models = models_of(field.annotation)
        assert models, section
        assert re.search(rf"^\[\[?{section}\]\]?\s*(#.*)?$", text, re.M), f"[{section}] is not in etc/evedge.toml"
        for model in models + [m for model in models for f in model.model_fields.values() for m in models_of(f.annotation)]:
            for name, info in model.model_fields.items():
                key = info.alias or name  # [smtp] from (a keyword in Python)
                documented = rf"^(#? ?{key} = |\[+\w+\.{key}[\].])"  # a key, or a table: [meters.points]
                assert re.search(documented, text, re.M), f"{section}.{key} is not documented in etc/evedge.toml"


def test_list_items_are_overridden_by_id_or_index(tmp_path):
    config = write(tmp_path, '[[chargers]]\nid = "CP01"\npassword = "from-file-password-1"\n'
                              '[[chargers]]\nid = "cp02"\npassword = "from-file-password-2"\n')  # fmt: skip
    settings = load_settings(config, {"EVEDGE_CHARGERS__CP01__PASSWORD": "from-env-password-1",
                                      "EVEDGE_CHARGERS__1__PRIORITY": "7", "EVEDGE_CHARGERS__CP02__MAX_W": "3700"})  # fmt: skip
    assert settings.charger("CP01").password.get_secret_value() == "from-env-password-1"
    assert settings.charger("cp02").priority == 7 and settings.charger("cp02").max_w == 3700


def test_secrets_are_never_echoed(tmp_path):
    config = write(tmp_path, '[[chargers]]\nid = "CP01"\npassword = ["not", "a", "string"]\n')
    with pytest.raises(ConfigError) as error:
        load_settings(config, {})
    assert "chargers.CP01.password" in str(error.value) and "not" not in str(error.value).split(":", 1)[1]
    settings = load_settings(write(tmp_path, '[[chargers]]\nid = "A"\npassword = "hunter22hunter22"\n'), {})
    assert "hunter22" not in repr(settings) and "hunter22" not in str(settings.model_dump())
    with pytest.raises(ConfigError) as short:
        load_settings(write(tmp_path, '[[chargers]]\nid = "A"\npassword = "hunter22"\n'), {})
    assert str(short.value) == "chargers.A.password: must be 16 to 40 characters long (OCPP security profile 1)"


def test_limit_in_amps_becomes_watts(tmp_path):
    settings = load_settings(write(tmp_path, "[site]\nlimit_a = 100\nvoltage_v = 230\n"), {})
    assert settings.site.limit == 100 * 230 * 3
    with pytest.raises(ConfigError, match="give limit_w or limit_a, not both"):
        load_settings(write(tmp_path, "[site]\nlimit_a = 100\nlimit_w = 5\n"), {})


def test_listen_addresses():
    assert split_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert split_listen("[::]:8080") == ("::", 8080)
    for bad in ("9000", ":9000", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError):
            split_listen(bad)


def test_an_empty_environment_and_no_file_section_gives_safe_defaults(tmp_path):
    settings = load_settings(write(tmp_path, ""), {})
    assert settings.ocpp.auto_accept is False and settings.ocpp.security_profile == 1
    assert settings.ocpp.max_frame_bytes == 65536


def test_every_problem_shows_in_one_run(tmp_path):
    config = write(tmp_path, '[site]\nlimit_w = -1\n[[groups]]\nid = "g"\nchargers = ["GHOST"]\n'
                             '[[chargers]]\nid = "CP01"\nmax_w = "x"\n[[chargers]]\nid = "CP01"\npassword = "p" \n')  # fmt: skip
    with pytest.raises(ConfigError) as error:
        load_settings(config, {})
    problems = "\n".join(error.value.problems)
    for expected in ("site.limit_w:", "chargers.CP01.max_w:", "chargers.CP01.password: must be 16",
                     "chargers.CP01: the id is used twice", "groups.g.chargers: no charger has the id 'GHOST'",
                     "chargers.CP01.password: required with ocpp.security_profile = 1"):  # fmt: skip
        assert expected in problems


def test_a_charger_may_not_be_named_site(tmp_path):
    # cmd/site/limit (MQTT) and the Site node (OPC UA) name the site where chargers are named too.
    with pytest.raises(ConfigError, match="chargers.site.id: .*names the site itself"):
        load_settings(write(tmp_path, '[ocpp]\nsecurity_profile = 0\n[[chargers]]\nid = "site"\n'), {})


def test_two_listeners_on_one_port_are_named(tmp_path):
    same = write(tmp_path, '[ocpp]\nsecurity_profile = 0\nlisten = "0.0.0.0:8080"\n')  # the web's default port
    with pytest.raises(ConfigError, match=r"web.listen: port 8080 is taken by ocpp.listen \(0.0.0.0:8080\)"):
        load_settings(same, {})
    assert load_settings(same, {"EVEDGE_WEB__LISTEN": "127.0.0.1:8081"}).web.listen == "127.0.0.1:8081"
    apart = write(tmp_path, '[ocpp]\nsecurity_profile = 0\nlisten = "127.0.0.1:9100"\n[web]\nlisten = "127.0.0.2:9100"\n')
    assert load_settings(apart, {}).ocpp.listen == "127.0.0.1:9100"  # two addresses, one port each: fine


def test_ids_differing_only_in_case_are_addressed_by_index(tmp_path):
    config = write(tmp_path, '[ocpp]\nsecurity_profile = 0\n[[chargers]]\nid = "cp1"\n[[chargers]]\nid = "CP1"\n')
    with pytest.raises(ConfigError, match="differ only in case"):
        load_settings(config, {"EVEDGE_CHARGERS__CP1__MAX_W": "7400"})
    assert load_settings(config, {"EVEDGE_CHARGERS__1__MAX_W": "7400"}).charger("CP1").max_w == 7400


def test_a_nested_override_is_named_in_the_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, ""), {"EVEDGE_OCPP__LISTEN__HOST": "x"})
    assert error.value.problems == ["ocpp.listen: Input should be a valid string [from EVEDGE_OCPP__LISTEN__HOST]"]


def test_a_certificate_without_its_key_is_named(tmp_path):
    config = write(tmp_path, '[mqtt]\nhost = "broker"\ncert_file = "client.pem"\n[opcua]\nprivate_key = "k.pem"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(config, {})
    text = "\n".join(error.value.problems)
    assert "mqtt" in text and "cert_file and key_file go together" in text
    assert "opcua" in text and "certificate and private_key go together" in text
