"""Settings: the one source of configuration truth.

One TOML file (``-c FILE``, else ``$EVEDGE_CONFIG``, else ``etc/evedge.toml``), every key overridable from
the environment: ``EVEDGE_SECTION__KEY`` (``EVEDGE_SITE__LIMIT_W=200000``), list items addressed by id or
index (``EVEDGE_CHARGERS__CP01__PASSWORD=...``), a whole list as JSON (``EVEDGE_GROUPS='[...]'``).

The models double as documentation: every field has a description, and ``etc/evedge.toml`` mirrors them.
Problems are reported as :class:`ConfigError` with one line per problem naming the key path.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.auth import check_password_hash_format

ENV_PREFIX = "EVEDGE_"
DEFAULT_CONFIG = Path("etc/evedge.toml")
# Environment variables of ours that are not config keys.
NON_KEY_ENV = {"EVEDGE_CONFIG", "EVEDGE_LOG_FORMAT", "EVEDGE_LOG_LEVEL", "EVEDGE_TOKEN", "EVEDGE_URL"}
_SECRET_WORDS = ("password", "secret", "token", "key")


class ConfigError(Exception):
    """A config that must not be run; ``problems`` holds one 'key: what is wrong' line each."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(problems))


def split_listen(value: str) -> tuple[str, int]:
    """'0.0.0.0:9000' -> ('0.0.0.0', 9000); '[::]:9000' -> ('::', 9000)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, for example 0.0.0.0:9000")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return host.strip("[]"), int(port)


_ANY_HOST = frozenset({"0.0.0.0", "::", ""})


def _check_listen(value: str) -> str:
    split_listen(value)
    return value


def _check_identifier(value: str) -> str:
    # Ids end up in URLs, MQTT topics and OPC UA node ids: keep them to characters safe in all three.
    if not value or len(value) > 48:
        raise ValueError("must be 1 to 48 characters long")
    if not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value):
        raise ValueError("may only contain letters, digits, '-', '_' and '.'")
    return value


# "site" names the site itself where chargers are named too (cmd/site/limit in MQTT, the Site node in OPC UA).
RESERVED_CHARGER_IDS = frozenset({"site"})


def _check_charger_id(value: str) -> str:
    if value.lower() in RESERVED_CHARGER_IDS:
        raise ValueError(f"{value!r} names the site itself in MQTT topics and OPC UA; choose another charge point id")
    return value


def _check_phases(value: int) -> int:
    if value not in (1, 3):
        raise ValueError("must be 1 or 3")
    return value


def _check_charger_password(value: SecretStr) -> SecretStr:
    if not 16 <= len(value.get_secret_value()) <= 40:
        raise ValueError("must be 16 to 40 characters long (OCPP security profile 1)")
    return value


def _check_opc_tcp(value: str) -> str:
    if not value.startswith("opc.tcp://") or len(value) <= len("opc.tcp://"):
        raise ValueError("must be an opc.tcp://HOST:PORT/... address")
    return value


_STATUS_POINTS = ("online", "last_error")


def _check_point_name(value: str) -> str:
    # Point names become the last segment of meters/{id}/{name}, MQTT topics and OPC UA node ids.
    if not value or not value[0].isascii() or not value[0].islower() or not all(
        c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in value
    ):
        raise ValueError(f"{value!r}: a point name is lower case letters, digits and '_', starting with a letter")
    if value in _STATUS_POINTS:
        raise ValueError(f"{value!r} is the meter's own status point; choose another name")
    return value


Listen = Annotated[str, AfterValidator(_check_listen)]
PointName = Annotated[str, AfterValidator(_check_point_name)]
OpcTcpUrl = Annotated[str, AfterValidator(_check_opc_tcp)]
ChargerPassword = Annotated[SecretStr, AfterValidator(_check_charger_password)]
Phases = Annotated[int, AfterValidator(_check_phases)]
Identifier = Annotated[str, AfterValidator(_check_identifier)]
ChargerIdentifier = Annotated[str, AfterValidator(_check_identifier), AfterValidator(_check_charger_id)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySettings(Section):
    id: Identifier = Field("evedge", description="Gateway id: MQTT topic segment and OPC UA namespace")
    state_dir: Path = Field(
        Path("var"),
        description="SQLite database, uploaded files, certificates (relative paths are from the working directory)",
    )


class OcppSettings(Section):
    listen: Listen = Field(
        "0.0.0.0:9000", description="ws://HOST:PORT/ocpp/{chargePointId} (plain; off under security profiles 2 and 3)"
    )
    security_profile: int = Field(
        1, ge=0, le=3, description="The lowest OCPP security profile the site accepts: 0 no authentication (lab "
        "only); 1 HTTP Basic auth with a per-charger password; 2 TLS + Basic auth; 3 TLS with a client certificate "
        "signed by the site CA. 2 and 3 turn the plain listener off"
    )
    tls_listen: str = Field(
        "0.0.0.0:9443", description='wss://HOST:PORT/ocpp/{chargePointId} (security profiles 2 and 3; "" turns it '
        "off): a client certificate whose CN is the charge point id authenticates it, else its Basic-auth password"
    )
    tls_host_names: list[str] = Field(
        default_factory=list, description="Host names and addresses chargers reach the gateway at: put in the server "
        "certificate the gateway makes, besides localhost, 127.0.0.1, ::1 and the machine's host name"
    )
    tls_certificate: Path | None = Field(
        None, description="Server certificate chain (PEM) to use instead of the one the site CA makes in "
        "{state_dir}/pki (re-read twice a day)"
    )
    tls_private_key: Path | None = Field(None, description="The server certificate's private key (PEM)")
    tls_client_ca: Path | None = Field(
        None, description="More CA certificates (PEM) that chargers' client certificates may chain to, besides the "
        "site CA"
    )
    tls_client_days: int = Field(
        730, ge=1, le=3650, description="Validity of the client certificates the site CA signs (SignCertificate)"
    )
    auto_accept: bool = Field(False, description="Accept unknown charger ids (unauthenticated); refused ids are listed")
    heartbeat_interval_s: int = Field(300, ge=10, le=86400, description="Heartbeat interval given at boot")
    call_timeout_s: float = Field(30.0, gt=0, le=600, description="How long to wait for a charger's answer")
    max_frame_bytes: int = Field(
        65536, ge=1024, le=16 * 1024 * 1024, description="Larger frames close the connection (1009)"
    )
    queue_size: int = Field(
        32, ge=1, le=1024, description="Gateway -> charger requests waiting per charger before new ones are refused"
    )
    rate_limit_per_s: float = Field(
        20.0, gt=0, description="Messages per second read from one charger; faster ones wait (TCP backpressure)"
    )
    rate_limit_burst: int = Field(200, ge=1, description="Messages a charger may send at once before the rate applies")
    registration_wait_s: float = Field(
        10.0, gt=0, le=600, description="Nothing is sent to a charger before its BootNotification is accepted or it "
        "sends something else; one that booted here before and reconnects in silence is taken as registered after "
        "this"
    )

    @field_validator("tls_listen")
    @classmethod
    def _tls_listen(cls, value: str) -> str:
        return value and _check_listen(value)

    @field_validator("tls_certificate", "tls_private_key", "tls_client_ca")
    @classmethod
    def _readable_pem(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise ValueError("no such file") from None
        except OSError as e:
            raise ValueError(f"cannot be read ({e.strerror})") from None
        if b"-----BEGIN " not in text:
            raise ValueError("not a PEM file")
        return path

    @model_validator(mode="after")
    def _tls(self) -> OcppSettings:
        if self.security_profile >= 2 and not self.tls_listen:
            raise ValueError("security_profile 2 and 3 need tls_listen (the plain listener is off)")
        return _together(self, "tls_certificate", "tls_private_key")


class WebSettings(Section):
    listen: Listen = Field("0.0.0.0:8080", description="Console and HTTP API (/api/v1)")
    tls: bool = Field(False, description="HTTPS on that port: with the server certificate the site CA makes in "
                      "{state_dir}/pki (as for OCPP over TLS), or tls_certificate and tls_private_key")  # fmt: skip
    tls_certificate: Path | None = Field(None, description="Server certificate chain (PEM) for HTTPS, instead of "
                                         "the site CA's (re-read twice a day)")  # fmt: skip
    tls_private_key: Path | None = Field(None, description="Its private key (PEM)")
    session_idle_min: int = Field(30, ge=1, le=1440, description="A console login ends after this many minutes "
                                  "without a request")  # fmt: skip

    @field_validator("tls_certificate", "tls_private_key")
    @classmethod
    def _readable_pem(cls, path: Path | None) -> Path | None:
        return OcppSettings._readable_pem(path)

    @model_validator(mode="after")
    def _cert_with_key(self) -> WebSettings:
        return _together(self, "tls_certificate", "tls_private_key")

    public_url: Annotated[str | None, AfterValidator(lambda v: _check_public_url(v))] = Field(  # defined below
        None, description="Base URL people reach the console at, for the links in alarm notifications (default: "
        "http://{host name}:{port})"
    )


class SiteSettings(Section):
    limit_w: float | None = Field(None, gt=0, description="Grid import limit in W (or give limit_a)")
    limit_a: float | None = Field(None, gt=0, description="Grid import limit in A per phase (or give limit_w)")
    voltage_v: float = Field(230.0, gt=0, le=1000, description="Phase-to-neutral voltage, for A <-> W")
    phases: Phases = Field(3, description="Phases of the grid connection (1 or 3)")
    grid_meter: Identifier | None = Field(None, description="Id of the meter that measures the site's import")
    fallback_limit_w: float | None = Field(
        None, ge=0, description="Limit for all EVs together while the grid meter is stale (needed with grid_meter)"
    )
    timezone: str = Field("UTC", description="The site's time zone, for schedules (e.g. Europe/Paris)")

    @model_validator(mode="after")
    def _one_limit(self) -> SiteSettings:
        if self.limit_w is not None and self.limit_a is not None:
            raise ValueError("give limit_w or limit_a, not both")
        return self

    @property
    def limit(self) -> float | None:
        """The site limit in W, whichever way it was given."""
        if self.limit_a is not None:
            return self.limit_a * self.voltage_v * self.phases
        return self.limit_w


class GroupSettings(Section):
    id: Identifier = Field(description="Group (circuit) id")
    limit_w: float | None = Field(None, gt=0, description="Limit of the circuit in W")
    chargers: list[Identifier] = Field(default_factory=list, description="Ids of the chargers on this circuit")
    parent: Identifier | None = Field(None, description="The group this circuit hangs from (its limit holds too)")


Control = Literal["auto", "evse", "each_evse", "charger", "none"]
RateUnit = Literal["auto", "A", "W"]


class ChargerSettings(Section):
    id: ChargerIdentifier = Field(description="Charge point id, as in ws://HOST:PORT/ocpp/{id} (not 'site')")
    password: ChargerPassword | None = Field(
        None, description="Basic-auth password, 16 to 40 characters (OCPP security profile 1); an OCPP 1.6 "
        "AuthorizationKey is written as its 40 hexadecimal digits"
    )
    password_hash: str | None = Field(None, description="Hash of the password, from `evedge passwd`")
    max_w: float = Field(22000.0, gt=0, description="Rated power of the charger in W")
    phases: Phases = Field(3, description="Phases the charger is wired to (1 or 3)")
    priority: int = Field(1, ge=0, le=100, description="Higher numbers are served first by the load cap")
    evses: int = Field(1, ge=1, le=32, description="Number of EVSEs (1.6: connectors)")
    phase_rotation: Literal["L1L2L3", "L2L3L1", "L3L1L2"] = Field(
        "L1L2L3", description="How the charger is wired: its first phase is the site's L1, L2 or L3 (where a "
        "single-phase car loads the site)"
    )
    meter: Identifier | None = Field(None, description="A meter that measures the whole charger (its power "
                                     "counts instead of the charger's own MeterValues)")
    control: Control | None = Field(None, description="How the load cap steers this charger, as for its model "
                                    "([[charger_models]] control); default: its model's, else auto")
    rate_unit: RateUnit | None = Field(None, description="Unit of its charging profiles (auto, A or W); default: "
                                       "its model's, else auto")
    evse_meters: dict[str, Identifier] = Field(
        default_factory=dict, description='Meters that measure single EVSEs: { "1" = "meter-id", ... }'
    )

    @model_validator(mode="after")
    def _check_password(self) -> ChargerSettings:
        if self.password is not None and self.password_hash is not None:
            raise ValueError("give password or password_hash, not both")
        if self.password_hash is not None:
            check_password_hash_format(self.password_hash)
        return self

    @model_validator(mode="after")
    def _check_meters(self) -> ChargerSettings:
        for evse in self.evse_meters:
            if not evse.isdigit() or not 1 <= int(evse) <= self.evses:
                raise ValueError(f"evse_meters: {evse!r} is not an EVSE of this charger (1 to {self.evses})")
        if self.meter is not None and self.evses == 1 and self.evse_meters:
            raise ValueError("meter already measures the only EVSE: give meter or evse_meters, not both")
        return self


ByteOrder = Literal["big", "little"]


class RegisterSettings(Section):
    """One value in a Modbus register map (a profile file, or a meter's inline [meters.registers])."""

    address: int = Field(ge=0, le=65535, description="Register address on the wire, 0-based")
    kind: Literal["input", "holding"] = Field(description="input (function 04) or holding (function 03)")
    type: Literal["u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"] = Field(description="Data type")
    scale: float = Field(1.0, description="value = raw * scale + offset")
    offset: float = Field(0.0, description="value = raw * scale + offset")
    byte_order: ByteOrder | None = Field(None, description="Bytes in a register (default: the map's)")
    word_order: ByteOrder | None = Field(None, description="Registers in a 32/64-bit value (default: the map's)")
    unit: str | None = Field(None, description="Unit of the value after scaling, for points outside the standard "
                             "names (power_w and the like say theirs)")


class _Meter(Section):
    id: Identifier = Field(description="Meter id: meters/{id}/... in the process image")
    poll_s: float = Field(1.0, gt=0, le=3600, description="Seconds between reads (OPC UA: publishing interval)")
    stale_after_s: float = Field(5.0, gt=0, description="Values turn bad when the meter has not answered this long")
    max_backoff_s: float = Field(
        5.0, gt=0, description="Longest wait between retries of a meter that does not answer (it is back within that)"
    )

    @model_validator(mode="after")
    def _stale_after_a_poll(self) -> _Meter:
        if self.stale_after_s <= self.poll_s:
            raise ValueError(f"stale_after_s ({self.stale_after_s:g} s) must be longer than poll_s "
                             f"({self.poll_s:g} s), or values turn bad between two reads")  # fmt: skip
        return self


class _ModbusMeter(_Meter):
    unit: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id")
    profile: str | None = Field(None, description="A register map from drivers/profiles (file name without .toml)")
    registers: dict[PointName, RegisterSettings] = Field(
        default_factory=dict, description="Inline register map, by point name (added to the profile's, or instead)"
    )
    byte_order: ByteOrder = Field("big", description="Default byte order of the inline registers")
    word_order: ByteOrder = Field("big", description="Default word order of the inline registers")
    max_gap: int = Field(0, ge=0, le=100, description="Unused registers one request may read across (inline map)")
    timeout_s: float = Field(1.0, gt=0, le=30, description="How long to wait for an answer")

    @model_validator(mode="after")
    def _some_registers(self) -> _ModbusMeter:
        if self.profile is None and not self.registers:
            raise ValueError("give a profile or registers")
        return self


class ModbusTcpMeter(_ModbusMeter):
    driver: Literal["modbus"] = Field(description="Modbus TCP")
    host: str = Field(min_length=1, description="Meter (or Modbus gateway) address")
    port: int = Field(502, ge=1, le=65535, description="Modbus TCP port")


class ModbusRtuMeter(_ModbusMeter):
    driver: Literal["modbus-rtu"] = Field(description="Modbus RTU on a serial line (RS-485)")
    device: str = Field(min_length=1, description="Serial port, e.g. /dev/ttyUSB0")
    unit: int = Field(1, ge=1, le=247, description="Modbus unit (slave) id: 1 to 247 on a serial line")
    baudrate: int = Field(9600, ge=300, le=921600, description="Bits per second")
    parity: Literal["N", "E", "O"] = Field("N", description="N, E or O")
    stopbits: int = Field(1, ge=1, le=2, description="1 or 2")
    bytesize: int = Field(8, ge=7, le=8, description="7 or 8")
    inter_request_delay_s: float = Field(
        0.02, ge=0, le=1, description="Silence between two requests on the line (some RS-485 meters need it)"
    )


class OpcuaMeter(_Meter):
    driver: Literal["opcua"] = Field(description="OPC UA server (the gateway is the client)")
    endpoint: OpcTcpUrl = Field(description="opc.tcp://HOST:PORT/path")
    points: dict[PointName, str] = Field(min_length=1, description="Point name = node id, e.g. power_w = \"ns=2;s=Load\"")
    security_policy: Literal["None", "Basic256Sha256", "Aes256Sha256RsaPss"] = Field(
        "None", description="Security policy (a client certificate is made at first start)"
    )
    security_mode: Literal["Sign", "SignAndEncrypt"] = Field("SignAndEncrypt", description="With a policy")
    username: str | None = Field(None, description="User name, when the server asks for one")
    password: SecretStr | None = Field(None, description="Password of that user")
    subscribe: bool = Field(True, description="Subscribe to changes (false: read every poll_s)")


class BacnetMeter(_Meter):
    driver: Literal["bacnet"] = Field(description="BACnet/IP device (read through the gateway's [bacnet] stack)")
    address: str = Field(min_length=1, description="Device address, IP or IP:port (47808 when not given)")
    points: dict[PointName, str] = Field(
        min_length=1, description='Point name = "object-type,instance", e.g. power_w = "analog-input,3"'
    )
    cov: bool = Field(True, description="Subscribe to changes (COV) where the device offers it; read otherwise")
    cov_lifetime_s: int = Field(300, ge=10, le=86400, description="Lifetime asked for each COV subscription")


MeterSettings = Annotated[
    ModbusTcpMeter | ModbusRtuMeter | OpcuaMeter | BacnetMeter, Field(discriminator="driver")
]


class BacnetSettings(Section):
    address: str | None = Field(
        None, description='The gateway\'s own BACnet/IP address as "IP/mask:port", e.g. "192.0.2.5/24:47808" '
        "(needed with bacnet meters)"
    )
    device_id: int = Field(599999, ge=0, le=4194302, description="The gateway's device instance on the network")
    apdu_timeout_s: float = Field(1.0, gt=0, le=60, description="How long to wait for an answer, each try")
    retries: int = Field(1, ge=0, le=10, description="Tries after the first before a device counts as silent")


class LoadcapSettings(Section):
    enabled: bool = Field(True, description="Keep the site under its limit (needs site.limit_w or limit_a)")
    mode: Literal["automatic", "manual"] = Field(
        "automatic", description="automatic: the allocator shares the power; manual: operators set limits per EVSE"
    )
    min_current_a: float = Field(6.0, ge=0, le=32, description="Least current a charging car is given (IEC 61851: 6)")
    tick_s: float = Field(1.0, gt=0, le=60, description="Allocation at least this often, besides every measurement")
    dead_band_w: float = Field(300.0, ge=0, description="A new limit that differs less than this is not sent")
    ramp_step_w: float = Field(3000.0, gt=0, description="Largest increase of one EVSE's limit at a time")
    ramp_interval_s: float = Field(2.0, ge=0, description="Time between two increases of one EVSE's limit")
    margin_w: float = Field(
        500.0, ge=0, description="The EVs are steered to keep the import this far below the limit (a third of it "
        "per phase): room for the building's swings between two measurements"
    )
    demand_margin_w: float = Field(
        1000.0, ge=0, description="A car drawing less than its limit keeps this much above its draw; the rest goes "
        "to the others"
    )
    profile_validity_s: int = Field(
        300, ge=30, le=86400, description="Dynamic limits expire after this (the baseline holds if the gateway dies)"
    )
    min_on_s: float = Field(300.0, ge=0, description="A car given power keeps it at least this long when rotating")
    min_off_s: float = Field(120.0, ge=0, description="A paused car waits at least this long before its turn")
    urgency_s: float = Field(
        1800.0, ge=0, description="Sessions with less slack than this before their departure come first"
    )


class LimitScheduleSettings(Section):
    cron: str = Field(description='From these moments on (crontab: "minute hour day month weekday", weekdays by '
                      "name: mon-fri)...")
    limit_w: float = Field(gt=0, description="... the site limit is this, until the next entry's moment")


class ActivationGroupSettings(Section):
    id: Identifier = Field(description="Activation group id")
    windows: list[str] = Field(
        min_length=1, description='When its connectors may charge: "mon-fri 07:00-19:00", "sat 08:00-12:30", ...'
    )
    connectors: list[str] = Field(min_length=1, description='Chargers ("CP01") or single EVSEs ("CP01/2")')


class StoreSettings(Section):
    meter_values_days: int = Field(
        400, ge=1, description="Meter values older than this are pruned (transactions are kept)"
    )
    audit_days: int = Field(730, ge=1, description="Audit records older than this are pruned")


def _together(section: Any, first: str, second: str) -> Any:
    """A certificate and its key: both or neither."""
    if (getattr(section, first) is None) != (getattr(section, second) is None):
        raise ValueError(f"{first} and {second} go together")
    return section


class AuthorizationSettings(Section):
    unknown_badges: Literal["accept", "reject"] = Field(
        "reject", description="What a badge on no list gets: accept (Accepted) or reject (Invalid)"
    )
    cache_days: int = Field(
        30, ge=0, le=3650, description="How long the authorization cache remembers a badge's last answer (0: off)"
    )


def _check_public_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1].strip("/")) == 0:
        raise ValueError("must be an http:// or https:// address, for example http://192.0.2.5:8080")
    return value.rstrip("/")


class FilesSettings(Section):
    """Firmware served to chargers, diagnostics and logs received from them (on the web port)."""

    public_url: Annotated[str | None, AfterValidator(_check_public_url)] = Field(
        None, description="Base URL chargers reach the web port at (default: the address their OCPP connection "
        "reached, with the web port)"
    )
    max_upload_mb: float = Field(50.0, gt=0, le=4096, description="Largest diagnostics or log file a charger may "
                                 "upload; a larger one is refused (413)")  # fmt: skip
    link_valid_s: int = Field(
        3600, ge=60, le=30 * 86400, description="How long a link given to a charger works (after the retrieve date "
        "of a firmware update, plus its retries)"
    )


class ChargerModelSettings(Section):
    model: str = Field(min_length=1, max_length=50, description="Charger model, as its BootNotification says")
    vendor: str | None = Field(None, max_length=50, description="Charger vendor (default: any vendor)")
    tolerate: list[str] = Field(
        default_factory=list, description="Actions whose schema violations from this model are logged and accepted"
    )
    control: Control = Field(
        "auto", description="How the load cap steers this model: auto (the finest way it accepts, learnt from "
        "what it refuses), evse (a TxProfile per session), each_evse (one TxDefaultProfile on connector 0), "
        "charger (its ChargePointMax/ChargingStationMax profile), none (not at all: its rating counts as fixed load)"
    )
    rate_unit: RateUnit = Field("auto", description="Unit of its charging profiles: auto (as it says it takes), A or W")

    @model_validator(mode="after")
    def _known_actions(self) -> ChargerModelSettings:
        from ocpp.v16.enums import Action as Action16
        from ocpp.v201.enums import Action as Action201

        known = {a.value for a in Action16} | {a.value for a in Action201}
        unknown = sorted(set(self.tolerate) - known)
        if unknown:
            raise ValueError(f"not OCPP actions: {', '.join(unknown)}")
        return self


class OutboxSettings(Section):
    max_mb: float = Field(
        256.0, gt=0, description="Disk budget of the messages waiting for a receiver (their payload bytes); when it "
        "is reached the oldest telemetry is dropped, never transactions, alarms or lifecycle events"
    )
    min_free_mb: float = Field(
        100.0, ge=0, description="Free space kept on the state directory's disk: below it, queued telemetry is "
        "halved (oldest first) until there is room again"
    )


class MqttSettings(Section):
    host: str = Field(min_length=1, description="Broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is the usual one with TLS)")
    version: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    client_id: str | None = Field(None, description="Client id at the broker (default: evedge-{gateway.id})")
    username: str | None = Field(None, description="User name at the broker")
    password: SecretStr | None = Field(None, description="Password at the broker")
    tls: bool = Field(False, description="Connect over TLS (the broker's certificate checked against ca_file)")
    ca_file: Path | None = Field(None, description="CA certificate(s) the broker's certificate must chain to "
                                 "(PEM; default: the system's)")  # fmt: skip
    cert_file: Path | None = Field(None, description="Client certificate (PEM), for brokers that authenticate by "
                                   "certificate")  # fmt: skip
    key_file: Path | None = Field(None, description="The client certificate's private key (PEM)")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive")
    reconnect_max_s: float = Field(60.0, gt=0, description="Longest wait between two connection attempts")
    telemetry_interval_s: float = Field(
        10.0, gt=0, description="The changed points are batched into one durable telemetry message this often"
    )
    state_interval_s: float = Field(
        1.0, gt=0, description="Retained state topics are republished at most this often (latest values)"
    )
    max_inflight: int = Field(20, ge=1, le=1000, description="Durable messages sent before their PUBACKs come back")
    command_role: Literal["guest", "operator", "admin"] = Field(
        "operator", description="Role of commands received at .../cmd/...: guest refuses every action"
    )

    @model_validator(mode="after")
    def _key_with_cert(self) -> MqttSettings:
        return _together(self, "cert_file", "key_file")


class OpcuaServerSettings(Section):
    listen: Listen = Field("0.0.0.0:4840", description="opc.tcp://HOST:PORT/evedge")
    allow_none: bool = Field(
        False, description="Also offer the None security policy (no signing, no encryption): lab use only"
    )
    allow_anonymous: bool = Field(False, description="Let clients in without a user (read only, guest role)")
    certificate: Path | None = Field(
        None, description="Server certificate (DER or PEM); default: {state_dir}/opcua/server-cert.der, made at "
        "first start"
    )
    private_key: Path | None = Field(None, description="The server certificate's private key (PEM)")
    min_interval_s: float = Field(
        0.5, ge=0.05, description="Point changes reach the address space at most this often (coalesced)"
    )

    @model_validator(mode="after")
    def _key_with_cert(self) -> OpcuaServerSettings:
        return _together(self, "certificate", "private_key")


class SmtpSettings(Section):
    """The mail server alarm notifications go through."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = Field(min_length=1, description="Mail server host name or address")
    port: int = Field(587, ge=1, le=65535, description="587 with starttls, 465 with tls, 25 without")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (upgrade after connecting), tls (implicit TLS from the start) or none"
    )
    user: str | None = Field(None, description="Login user, when the server wants one")
    password: SecretStr | None = Field(None, description="Login password")
    sender: str = Field(alias="from", min_length=3, description='Sender, e.g. "evedge depot-1 <evedge@example.com>"')
    ca_file: Path | None = Field(None, description="CA certificate(s) the server's certificate must chain to (PEM; "
                                 "default: the system's)")  # fmt: skip
    timeout_s: float = Field(30.0, gt=0, le=600, description="How long one delivery may take")


def _check_webhook(value: str | None) -> str | None:
    if value is not None and (not value.startswith(("http://", "https://")) or not value.split("://", 1)[1]):
        raise ValueError("must be an http:// or https:// address")
    return value


class NotifySettings(Section):
    """Who hears about which alarms, and how (e-mail, webhook; an SMS gateway's HTTP API is a webhook)."""

    email: list[Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        default_factory=list, description="Addresses the alarms go to (through [smtp])"
    )
    webhook: Annotated[str | None, AfterValidator(_check_webhook)] = Field(
        None, description="URL the alarms are POSTed to (JSON, signed: X-Evedge-Signature: sha256=HMAC of the body)"
    )
    webhook_secret: SecretStr | None = Field(None, description="Key of the webhook's HMAC-SHA256 signature")
    webhook_body: str | None = Field(
        None, description="Template of the webhook's body instead of the JSON document (an SMS gateway's form), "
        "with the same placeholders as the e-mail"
    )
    webhook_content_type: str = Field("application/json", description="Content-Type of webhook_body")
    min_level: int = Field(1, ge=1, le=30, description="Alarms of this level and above")
    sources: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1, description='Point patterns: "chargers/*", "meters/grid/*"'
    )
    hours: list[str] = Field(
        default_factory=list, description='On-call windows in the site\'s time zone ("mon-fri 07:00-19:00"); '
        "none: always"
    )
    return_to_normal: bool = Field(False, description="Also tell when an alarm's condition has gone")
    gather_s: float = Field(
        10.0, ge=0, le=3600, description="Alarms rising within this time of the first go out together"
    )
    digest_after: int = Field(
        3, ge=2, le=10000, description="That many alarms or more together make one digest, not a message each"
    )
    subject: str | None = Field(None, description="Template of the e-mail subject (Jinja2, sandboxed)")
    body: str | None = Field(None, description="Template of the e-mail text (Jinja2, sandboxed)")
    retry_max_s: float = Field(300.0, gt=0, le=86400, description="Longest wait between two delivery attempts")

    @model_validator(mode="after")
    def _somewhere(self) -> NotifySettings:
        if not self.email and self.webhook is None:
            raise ValueError("give email addresses, a webhook, or both")
        return self


Value = bool | int | float | str


class LimitSettings(Section):
    limit: float = Field(allow_inf_nan=False, description="Raised at this value (high: at or above, low: at or below)")
    deadband: float = Field(0.0, ge=0, allow_inf_nan=False, description="Cleared only this far back on the other "
                            "side of the limit (hysteresis)")  # fmt: skip
    delay_s: float = Field(0.0, ge=0, le=86400, description="Raised only when the condition has held this long")
    off_delay_s: float = Field(0.0, ge=0, le=86400, description="Cleared only when it has been gone this long")
    level: int = Field(10, ge=1, le=30, description="Level 1-30 (OPC UA severity = level x 1000 / 30)")


class AlarmSettings(Section):
    """An alarm on any point, or an adjustment of a built-in alarm (give its id and only what changes)."""

    id: Identifier = Field(description="Alarm id; a built-in's id adjusts it (charger-offline, meter-stale, ...)")
    point: str | None = Field(
        None, min_length=1, description='The point, or a template over points: "chargers/*/evse/*/power_w"'
    )
    enabled: bool = Field(True, description="false turns the alarm (a built-in) off")
    high_high: LimitSettings | None = Field(None, description="Analog limit: { limit, deadband, delay_s, level }")
    high: LimitSettings | None = Field(None, description="Analog limit")
    low: LimitSettings | None = Field(None, description="Analog limit")
    low_low: LimitSettings | None = Field(None, description="Analog limit")
    equals: list[Value] | None = Field(None, description='Discrete: the abnormal values (["Faulted"], [false])')
    bad_quality: bool | None = Field(None, description="Discrete: abnormal when the value's quality is bad")
    level: int | None = Field(None, ge=1, le=30, description="Level of a discrete alarm (1-30)")
    delay_s: float | None = Field(None, ge=0, le=86400, description="Discrete: raised only after this long")
    off_delay_s: float | None = Field(None, ge=0, le=86400, description="Discrete: cleared only after this long")
    message: str | None = Field(None, max_length=500, description="Text: {1}, {2}... what the template's * "
                                "matched; {value}, {point}, {limit}")  # fmt: skip
    masked_by: list[str] | None = Field(
        None, description='Alarms that silence this one while they hold: ["charger-offline:{1}"]'
    )
    exclude: list[str] | None = Field(None, description="Points (or templates) the template leaves out")

    @model_validator(mode="after")
    def _one_kind(self) -> AlarmSettings:
        limits = [k for k in ("high_high", "high", "low", "low_low") if getattr(self, k) is not None]
        if limits and (self.equals is not None or self.bad_quality):
            raise ValueError("give limits (high_high, high, low, low_low) or a state (equals, bad_quality), not both")
        for upper, lower in (("high_high", "high"), ("high", "low"), ("low", "low_low")):
            a, b = getattr(self, upper), getattr(self, lower)
            if a is not None and b is not None and a.limit <= b.limit:
                raise ValueError(f"{upper}.limit must be above {lower}.limit")
        return self


class Settings(BaseSettings):
    """The whole configuration of one gateway."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    ocpp: OcppSettings = Field(default_factory=OcppSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    site: SiteSettings = Field(default_factory=SiteSettings)
    groups: list[GroupSettings] = Field(default_factory=list)
    chargers: list[ChargerSettings] = Field(default_factory=list)
    meters: list[MeterSettings] = Field(default_factory=list)
    bacnet: BacnetSettings = Field(default_factory=BacnetSettings)
    loadcap: LoadcapSettings = Field(default_factory=LoadcapSettings)
    limit_schedule: list[LimitScheduleSettings] = Field(default_factory=list)
    activation_groups: list[ActivationGroupSettings] = Field(default_factory=list, max_length=10)
    store: StoreSettings = Field(default_factory=StoreSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    authorization: AuthorizationSettings = Field(default_factory=AuthorizationSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    charger_models: list[ChargerModelSettings] = Field(default_factory=list)
    mqtt: MqttSettings | None = Field(None, description="The MQTT bridge runs when this section is present")
    opcua: OpcuaServerSettings | None = Field(None, description="The OPC UA server runs when this section is present")
    smtp: SmtpSettings | None = Field(None, description="Mail server for alarm notifications")
    notify: list[NotifySettings] = Field(default_factory=list, description="Who hears about which alarms")
    alarms: list[AlarmSettings] = Field(default_factory=list, description="Alarms beside (and adjusting) the "
                                        "built-in ones")  # fmt: skip

    @model_validator(mode="after")
    def _listeners_apart(self) -> Settings:
        # Caught here rather than as "address already in use" at start, which names no key.
        listeners = {"ocpp.listen": self.ocpp.listen if self.ocpp.security_profile < 2 else "",
                     "ocpp.tls_listen": self.ocpp.tls_listen, "web.listen": self.web.listen,
                     "opcua.listen": self.opcua.listen if self.opcua else ""}  # fmt: skip
        taken: dict[str, tuple[str, int]] = {}
        for key, listen in listeners.items():
            if not listen:
                continue
            host, port = split_listen(listen)
            for other, (other_host, other_port) in taken.items():
                if port and port == other_port and (host == other_host or _ANY_HOST & {host, other_host}):
                    raise ValueError(f"{key}: port {port} is taken by {other} ({listeners[other]})")
            taken[key] = (host, port)
        return self

    def charger(self, charger_id: str) -> ChargerSettings | None:
        return next((c for c in self.chargers if c.id == charger_id), None)

    def meter(self, meter_id: str) -> MeterSettings | None:
        return next((m for m in self.meters if m.id == meter_id), None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _FileWithEnvSource(settings_cls))


@dataclass
class _Loading:
    """What load_settings() is reading; the settings source fills in data and env_paths."""

    path: Path | None
    environ: Mapping[str, str]
    data: dict[str, Any] = field(default_factory=dict)
    env_paths: dict[str, str] = field(default_factory=dict)  # key path -> variable that set it


_loading: ContextVar[_Loading] = ContextVar("_loading")


class _FileWithEnvSource(PydanticBaseSettingsSource):
    """The TOML file with the EVEDGE_* environment applied on top of it."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        loading = _loading.get(None) or _Loading(None, os.environ)
        data = read_toml(loading.path) if loading.path is not None else {}
        loading.env_paths.update(apply_environment(data, loading.environ))
        loading.data = data
        return data


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"], str(path)) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot be read ({e.strerror})"], str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"], str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"], str(path)) from None


def apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Apply EVEDGE_* overrides to the parsed file in place; returns {key path: variable name}."""
    applied: dict[str, str] = {}
    problems: list[str] = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in NON_KEY_ENV:
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        section = Settings.model_fields.get(parts[0])
        if section is None:
            problems.append(f"{var}: there is no section {parts[0]!r}")
            continue
        try:
            applied[_set_path(data, parts, _env_value(environ[var]), _is_list(section))] = var
        except LookupError as e:
            problems.append(f"{var}: {e.args[0]}")
    if problems:
        raise ConfigError(problems, "environment")
    return applied


def _set_path(data: dict[str, Any], parts: list[str], value: Any, section_is_list: bool) -> str:
    """Set data[parts...] = value, list items found by id or index; returns the key path."""
    node: Any = data
    path: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = _item_index(node, part)
            if index is None:
                raise LookupError(f"no item {part!r} in {'.'.join(path)}")
            path.append(_label(node[index], index))
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            path.append(part)
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if (i == 0 and section_is_list) else {})
        else:
            raise LookupError(f"{'.'.join(path)} is not a table")
    return ".".join(path)


def _env_value(raw: str) -> Any:
    # JSON for lists and tables; everything else stays a string that pydantic converts to the key's type.
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            pass
    return raw


def _item_index(items: list, part: str) -> int | None:
    # Variable names are upper case, so ids match whatever their case; ids that differ only in case cannot
    # be told apart this way and must be addressed by index.
    found = [i for i, item in enumerate(items) if isinstance(item, dict) and str(item.get("id", "")).lower() == part]
    if len(found) > 1:
        raise LookupError(f"ids that differ only in case match {part!r}: give the item's index instead")
    if found:
        return found[0]
    if part.isdigit() and int(part) < len(items):
        return int(part)
    return None


def _is_list(field_info: Any) -> bool:
    return get_origin(field_info.annotation) is list


def _label(item: Any, index: int) -> str:
    return str(item["id"]) if isinstance(item, dict) and isinstance(item.get("id"), str) else f"[{index}]"


def config_path(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(path or environ.get("EVEDGE_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override and validate the config; raise ConfigError naming every problem at once."""
    environ = os.environ if environ is None else environ
    loading = _Loading(config_path(path, environ), environ)
    token = _loading.set(loading)
    try:
        settings: Settings | None = Settings()
        problems: list[str] = []
    except ValidationError as e:
        settings, problems = None, format_errors(e, loading.data, loading.env_paths)
    finally:
        _loading.reset(token)
    problems += reference_problems(loading.data)
    if problems:
        raise ConfigError(problems, str(loading.path))
    assert settings is not None
    return settings


def reference_problems(data: Mapping[str, Any]) -> list[str]:
    """What types cannot say: duplicate ids, references to things that do not exist, missing secrets. Works on
    the raw file (with its overrides), so these show up together with any type errors."""
    problems = []
    ids: dict[str, set[str]] = {}
    for name in ("chargers", "groups", "meters", "activation_groups", "alarms"):
        ids[name] = set()
        for item in _items(data, name):
            if item["id"] in ids[name]:
                problems.append(f"{name}.{item['id']}: the id is used twice")
            ids[name].add(item["id"])
    for group in _items(data, "groups"):
        members = group.get("chargers")
        for cid in members if isinstance(members, list) else []:
            if isinstance(cid, str) and cid not in ids["chargers"]:
                problems.append(f"groups.{group['id']}.chargers: no charger has the id {cid!r}")
    for group in _items(data, "groups"):
        parent = group.get("parent")
        if isinstance(parent, str) and parent not in ids["groups"]:
            problems.append(f"groups.{group['id']}.parent: no group has the id {parent!r}")
    problems += _group_cycles(data)
    for group in _items(data, "activation_groups"):
        members = group.get("connectors")
        for member in members if isinstance(members, list) else []:
            if isinstance(member, str) and member.split("/")[0] not in ids["chargers"]:
                problems.append(f"activation_groups.{group['id']}.connectors: no charger has the id "
                                f"{member.split('/')[0]!r}")  # fmt: skip
    for charger in _items(data, "chargers"):
        evse_meters = charger.get("evse_meters")
        attached = [("meter", charger.get("meter"))] + [
            (f"evse_meters.{n}", m) for n, m in (evse_meters.items() if isinstance(evse_meters, dict) else [])
        ]
        for key, meter in attached:
            if isinstance(meter, str) and meter not in ids["meters"]:
                problems.append(f"chargers.{charger['id']}.{key}: no meter has the id {meter!r}")
    site = data.get("site") if isinstance(data.get("site"), dict) else {}
    if isinstance(site.get("grid_meter"), str) and site["grid_meter"] not in ids["meters"]:
        problems.append(f"site.grid_meter: no meter has the id {site['grid_meter']!r}")
    if site.get("grid_meter") is not None and site.get("fallback_limit_w") is None:
        problems.append("site.fallback_limit_w: required with a grid_meter (what the EVs may draw together while "
                        "it is silent)")
    if data.get("smtp") is None:
        for n, route in enumerate(data.get("notify") or []):
            if isinstance(route, dict) and route.get("email"):
                problems.append(f"notify[{n}].email: e-mail needs an [smtp] section")
    ocpp = data.get("ocpp") if isinstance(data.get("ocpp"), dict) else {}
    if str(ocpp.get("security_profile", 1)) in ("1", "2"):
        for charger in _items(data, "chargers"):
            if charger.get("password") is None and charger.get("password_hash") is None:
                problems.append(f"chargers.{charger['id']}.password: required with ocpp.security_profile = 1 or 2")
    return problems


def _group_cycles(data: Mapping[str, Any]) -> list[str]:
    parents = {g["id"]: g.get("parent") for g in _items(data, "groups")}
    for start in parents:
        seen, node = [start], parents.get(start)
        while isinstance(node, str) and node in parents:
            if node in seen:
                return [f"groups.{start}.parent: groups hang from each other in a circle ({' -> '.join(seen + [node])})"]
            seen.append(node)
            node = parents.get(node)
    return []


def _items(data: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The items of a list section that have a text id (the others get their own type errors)."""
    items = data.get(name)
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)] if isinstance(items, list) else []


def format_errors(error: ValidationError, data: Any = None, env_paths: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem: 'chargers.CP01.max_w: Input should be greater than 0 (got -5)'."""
    env_paths = env_paths or {}
    lines = []
    for err in error.errors():
        path = _key_path(err["loc"], data)
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] == "union_tag_not_found":
            path, message = f"{path}.{err['ctx']['discriminator'].strip(chr(39))}", "required key is missing"
        elif err["type"] == "union_tag_invalid":
            path = f"{path}.{err['ctx']['discriminator'].strip(chr(39))}"
            message = f"unknown {err['ctx']['tag']!r}: expected one of {err['ctx']['expected_tags']}"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if not _is_secret(path) and not isinstance(err.get("input"), (dict, list)):
                message += f" (got {err['input']!r})"
        line = f"{path}: {message}" if path else message
        sources = [var for key, var in env_paths.items() if key == path or key.startswith(path + ".")]
        if path and sources:
            line += f" [from {', '.join(sources)}]"
        lines.append(line)
    return lines


def _key_path(loc: tuple, data: Any) -> str:
    # Name list items by their id where they have one: chargers.CP01.max_w, not chargers[3].max_w.
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            parts.append(_label(item, part))
            node = item
        elif isinstance(node, dict) and node.get("driver") == part:
            continue  # the union's tag (meters.grid.modbus.host): the driver is already the item's own key
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts).replace(".[", "[")


def _is_secret(path: str) -> bool:
    leaf = path.rsplit(".", 1)[-1]
    return any(word in leaf for word in _SECRET_WORDS)
