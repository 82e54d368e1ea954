"""The simulated charger's device model, monitoring, display messages and customer information (2.0.1), and the
security events both versions send (:func:`send_security_event`).

The 2.0.1 station describes itself as a real one does: ChargingStation, its EVSEs and connectors, and the
controllers (SampledDataCtrlr, AuthCtrlr, OCPPCommCtrlr, SecurityCtrlr, DeviceDataCtrlr, ...) with their
characteristics. Values the station acts on live in ``sim.variables`` (which GetVariables / SetVariables of
ocpp201.py read and write), so a report always shows what was set; every variable found there is reported,
also one this table does not describe. Reports go out after the answer to their request, in parts of
DeviceDataCtrlr.ItemsPerMessage[GetReport] items.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from gateway.sim.charger import Offline

log = logging.getLogger(__name__)

ITEMS_PER_MESSAGE = "8"  # small, so that every report of the simulated station comes in several parts
NETWORK_SLOTS = (1, 2, 3)  # OCPPCommCtrlr.NetworkConfigurationPriority's valuesList
SUPPORTED_FORMATS = ("ASCII", "UTF8", "URI")
SUPPORTED_STATES = ("Charging", "Faulted", "Idle")  # display messages for these states only
MAX_MESSAGES = 10  # DisplayMessageCtrlr.DisplayMessages maxLimit
_CRITERIA = {"ThresholdMonitoring": ("UpperThreshold", "LowerThreshold"), "DeltaMonitoring": ("Delta",),
             "PeriodicMonitoring": ("Periodic", "PeriodicClockAligned")}  # fmt: skip
_AVAILABILITY = {"Available": "Available", "Unavailable": "Unavailable", "Faulted": "Faulted", "Reserved": "Reserved"}


async def send_security_event(sim: Any, type: str, tech_info: str | None = None) -> None:
    """A SecurityEventNotification from the simulated charger, in its version's words."""
    module = call16 if sim.spec.version == "1.6" else call
    await sim.call(module.SecurityEventNotification(type=type, timestamp=sim.now(), tech_info=tech_info))


@dataclass
class Variable:
    """One variable of the device model, with its Actual value now (MaxSet: a second attribute)."""

    component: str
    variable: str
    value: str | None
    data_type: str = "string"
    mutability: str = "ReadOnly"
    unit: str | None = None
    limits: tuple[float, float] | None = None
    values_list: str | None = None
    monitoring: bool = False
    evse: int | None = None
    connector: int | None = None
    component_instance: str | None = None
    variable_instance: str | None = None
    persistent: bool = False
    constant: bool = False
    max_set: str | None = None

    @property
    def component_json(self) -> dict[str, Any]:
        """ComponentType in the library's snake_case."""
        out: dict[str, Any] = {"name": self.component}
        if self.component_instance:
            out["instance"] = self.component_instance
        if self.evse is not None:
            out["evse"] = {"id": self.evse, **({"connector_id": self.connector} if self.connector else {})}
        return out

    @property
    def variable_json(self) -> dict[str, Any]:
        return {"name": self.variable, **({"instance": self.variable_instance} if self.variable_instance else {})}

    def report_data(self) -> dict[str, Any]:
        attributes = [{"type": "Actual", "mutability": self.mutability, "persistent": self.persistent,
                       "constant": self.constant, **({"value": self.value} if self.mutability != "WriteOnly" else {})}]
        if self.max_set is not None:
            attributes.append({"type": "MaxSet", "value": self.max_set, "mutability": "ReadOnly", "persistent": True,
                               "constant": True})  # fmt: skip
        characteristics: dict[str, Any] = {"data_type": self.data_type, "supports_monitoring": self.monitoring}
        if self.unit:
            characteristics["unit"] = self.unit
        if self.limits:
            characteristics["min_limit"], characteristics["max_limit"] = self.limits
        if self.values_list:
            characteristics["values_list"] = self.values_list
        return {"component": self.component_json, "variable": self.variable_json, "variable_attribute": attributes,
                "variable_characteristics": characteristics}  # fmt: skip

    def at(self, component: dict[str, Any], variable: dict[str, Any] | None = None) -> bool:
        """Whether it is the (snake_case) component -- and variable, when given -- a request names."""
        evse = component.get("evse")
        if (component["name"], component.get("instance", self.component_instance)) != \
                (self.component, self.component_instance):  # fmt: skip
            return False
        if evse is not None and (evse["id"], evse.get("connector_id", self.connector)) != (self.evse, self.connector):
            return False
        return variable is None or (variable["name"], variable.get("instance", self.variable_instance)) == \
            (self.variable, self.variable_instance)  # fmt: skip


@dataclass
class DeviceState:
    """What the simulated station keeps across connections (monitors, display messages, network profiles,
    customers whose data it cleared), apart from the variables in ``sim.variables``."""

    monitors: dict[int, dict[str, Any]] = field(default_factory=dict)
    monitoring_base: str = "All"
    monitoring_level: int = 9
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    network_profiles: dict[int, dict[str, Any]] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(100))

    def __post_init__(self) -> None:
        self.restore_preconfigured()

    def restore_preconfigured(self) -> None:
        """The monitor the station ships with: a problem on the station, severity 2 (Critical)."""
        self.monitors[1] = {"id": 1, "component": {"name": "ChargingStation"}, "variable": {"name": "Problem"},
                            "type": "Delta", "value": 1.0, "severity": 2, "transaction": False,
                            "preconfigured": True}  # fmt: skip


def device_state(sim: Any) -> DeviceState:
    if not hasattr(sim, "device_state"):
        sim.device_state = DeviceState()
    return sim.device_state


def device_model(sim: Any) -> list[Variable]:
    """The station's device model with the values of now."""
    state = device_state(sim)
    settable = dict(sim.variables)

    def setting(component: str, variable: str, data_type: str = "string", **kw: Any) -> Variable | None:
        """A variable the station acts on: its value is in sim.variables (None: the station has it not), and it
        is writable unless read-only."""
        if (component, variable) not in settable:
            return None
        mutability = "ReadOnly" if (component, variable) in sim.read_only else "ReadWrite"
        return Variable(component, variable, settable.pop((component, variable)), data_type, mutability,
                        persistent=True, **kw)  # fmt: skip

    station_state = "Available" if any(e.available for e in sim.evses.values()) else "Unavailable"
    model: list[Variable | None] = [
        Variable("ChargingStation", "AvailabilityState", station_state, "OptionList",
                 values_list="Available,Occupied,Reserved,Unavailable,Faulted"),
        Variable("ChargingStation", "Available", "true", "boolean"),
        Variable("ChargingStation", "Problem", "false", "boolean", monitoring=True),
        Variable("ChargingStation", "SupplyPhases", str(sim.spec.phases), "integer", constant=True),
        setting("ChargingStation", "Model", constant=True),
        setting("ChargingStation", "VendorName", constant=True),
        setting("SampledDataCtrlr", "TxUpdatedInterval", "integer", unit="s", limits=(0, 3600)),
        setting("SampledDataCtrlr", "TxUpdatedMeasurands", "MemberList",
                values_list="Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC"),
        Variable("SampledDataCtrlr", "Enabled", "true", "boolean"),
        setting("AuthCtrlr", "AuthorizeRemoteStart", "boolean"),
        Variable("AuthCtrlr", "Enabled", "true", "boolean"),
        setting("OCPPCommCtrlr", "HeartbeatInterval", "integer", unit="s", limits=(1, 86400)),
        Variable("OCPPCommCtrlr", "NetworkConfigurationPriority", ",".join(map(str, sorted(state.network_profiles)))
                 or "1", "SequenceList", values_list=",".join(map(str, NETWORK_SLOTS))),  # fmt: skip
        Variable("OCPPCommCtrlr", "MessageTimeout", "30", "integer", unit="s", variable_instance="Default"),
        Variable("SecurityCtrlr", "SecurityProfile", "1" if sim.spec.password else "0", "integer", limits=(0, 3)),
        Variable("SecurityCtrlr", "Identity", sim.spec.id, persistent=True),
        Variable("SecurityCtrlr", "OrganizationName", sim.spec.vendor, persistent=True),
        setting("SmartChargingCtrlr", "Enabled", "boolean"),
        setting("SmartChargingCtrlr", "RateUnit", "MemberList", values_list="A,W"),
        setting("SmartChargingCtrlr", "ProfileStackLevel", "integer", limits=(0, 8)),
        Variable("MonitoringCtrlr", "Enabled", "true", "boolean"),
        Variable("MonitoringCtrlr", "ActiveMonitoringBase", state.monitoring_base, "OptionList",
                 values_list="All,FactoryDefault,HardWiredOnly"),
        Variable("MonitoringCtrlr", "ActiveMonitoringLevel", str(state.monitoring_level), "integer", limits=(0, 9)),
        Variable("DisplayMessageCtrlr", "Enabled", "true", "boolean"),
        Variable("DisplayMessageCtrlr", "DisplayMessages", str(len(state.messages)), "integer",
                 limits=(0, MAX_MESSAGES)),
        Variable("DisplayMessageCtrlr", "SupportedFormats", ",".join(SUPPORTED_FORMATS), "MemberList",
                 values_list="ASCII,HTML,URI,UTF8"),
    ]  # fmt: skip
    for message in ("GetReport", "GetVariables", "SetVariables"):
        model.append(Variable("DeviceDataCtrlr", "ItemsPerMessage", ITEMS_PER_MESSAGE, "integer",
                              variable_instance=message))  # fmt: skip
        model.append(Variable("DeviceDataCtrlr", "BytesPerMessage", "65000", "integer", unit="B",
                              variable_instance=message))  # fmt: skip
    for evse in sim.evses.values():
        availability = _AVAILABILITY.get(evse.status, "Occupied")
        model += [
            Variable("EVSE", "AvailabilityState", availability, "OptionList", evse=evse.id,
                     values_list="Available,Occupied,Reserved,Unavailable,Faulted"),
            Variable("EVSE", "Available", str(evse.available).lower(), "boolean", evse=evse.id),
            Variable("EVSE", "Power", str(round(evse.power_w, 1)), "decimal", unit="W", limits=(0, sim.spec.max_w),
                     monitoring=True, evse=evse.id, max_set=str(sim.spec.max_w)),
            Variable("Connector", "AvailabilityState", availability, "OptionList", evse=evse.id, connector=1,
                     values_list="Available,Occupied,Reserved,Unavailable,Faulted"),
            Variable("Connector", "ConnectorType", "cType2", evse=evse.id, connector=1, constant=True),
            Variable("Connector", "SupplyPhases", str(sim.spec.phases), "integer", evse=evse.id, connector=1),
        ]  # fmt: skip
    for v in model:  # a value another part of the simulator keeps in sim.variables is the one it acts on
        key = (v.component, v.variable) if v is not None and v.evse is None and not v.variable_instance else None
        if key in settable:
            v.value, v.mutability = settable.pop(key), "ReadOnly" if key in sim.read_only else "ReadWrite"
    # What the table above does not describe (another part of the simulator added it): reported all the same.
    model += [setting(component, variable) for component, variable in list(settable)]
    return [v for v in model if v is not None]


class Reports16:
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger. Its security events
    go out through :func:`send_security_event`."""

    sim: Any


class Reports201:
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger. A report is
    prepared while its request is answered and sent by the ``@after`` handler, once the answer is out."""

    sim: Any
    _queued: list[Any] | None = None

    @property
    def _device(self) -> DeviceState:
        return device_state(self.sim)

    def _queue(self, items: list[Any], message: Callable[[int, list[Any], bool], Any],
               size: int = int(ITEMS_PER_MESSAGE)) -> None:  # fmt: skip
        """Prepare a report of these items in parts of `size`: message(seq_no, part, tbc) makes each."""
        parts = [items[n : n + size] for n in range(0, len(items), size)] or [[]]
        self._queued = [message(n, chunk, n < len(parts) - 1) for n, chunk in enumerate(parts)]

    def _send_queued(self, **_: Any) -> None:
        messages, self._queued = self._queued, None
        if messages:
            self.sim.spawn(self._send_all(messages))

    async def _send_all(self, messages: list[Any]) -> None:
        for message in messages:
            try:
                await self.sim.call(message)
            except (Offline, OCPPError) as e:
                log.info("sim %s: report not sent on (%s)", self.sim.spec.id, e)
                return

    # -- the device model (B) ------------------------------------------------------------------------------

    @on(Action.get_base_report)
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> call_result.GetBaseReport:
        model = device_model(self.sim)
        if report_base == "ConfigurationInventory":
            model = [v for v in model if v.mutability != "ReadOnly"]
        elif report_base == "SummaryInventory":
            model = [v for v in model if v.variable in ("AvailabilityState", "Available", "Problem")]
        self._queue_report(request_id, model)
        return call_result.GetBaseReport(status="Accepted")

    @on(Action.get_report)
    def on_get_report(self, request_id: int, component_variable: list[dict] | None = None,
                      component_criteria: list[str] | None = None, **_: Any) -> call_result.GetReport:  # fmt: skip
        if "Active" in (component_criteria or []):
            return call_result.GetReport(status="NotSupported")  # the station does not track Active
        model = device_model(self.sim)
        if component_variable:
            model = [v for v in model if any(v.at(cv["component"], cv.get("variable")) for cv in component_variable)]
        if component_criteria:  # components that have one of these boolean variables set
            having = {(v.component, v.component_instance, v.evse, v.connector) for v in model
                      if v.variable in component_criteria and v.value == "true"}  # fmt: skip
            model = [v for v in model if (v.component, v.component_instance, v.evse, v.connector) in having]
        if not model:
            return call_result.GetReport(status="EmptyResultSet")
        self._queue_report(request_id, model)
        return call_result.GetReport(status="Accepted")

    def _queue_report(self, request_id: int, model: list[Variable]) -> None:
        self._queue([v.report_data() for v in model], lambda n, data, tbc: call.NotifyReport(
            request_id=request_id, generated_at=self.sim.now(), seq_no=n, tbc=tbc, report_data=data or None))

    @after(Action.get_base_report)
    def after_get_base_report(self, **_: Any) -> None:
        self._send_queued()

    @after(Action.get_report)
    def after_get_report(self, **_: Any) -> None:
        self._send_queued()

    @on(Action.set_network_profile)
    def on_set_network_profile(self, configuration_slot: int, connection_data: dict,
                               **_: Any) -> call_result.SetNetworkProfile:  # fmt: skip
        if configuration_slot not in NETWORK_SLOTS:
            return call_result.SetNetworkProfile(status="Rejected", status_info={"reason_code": "InvalidConfSlot"})
        if connection_data["ocpp_version"] != "OCPP20" or connection_data["ocpp_transport"] != "JSON":
            return call_result.SetNetworkProfile(status="Rejected", status_info={"reason_code": "InvalidNetworkConf"})
        self._device.network_profiles[configuration_slot] = connection_data
        return call_result.SetNetworkProfile(status="Accepted")

    # -- monitoring (N) --------------------------------------------------------------------------------------

    @on(Action.set_variable_monitoring)
    def on_set_variable_monitoring(self, set_monitoring_data: list[dict],
                                   **_: Any) -> call_result.SetVariableMonitoring:  # fmt: skip
        model = device_model(self.sim)
        results = []
        for item in set_monitoring_data:
            status, monitor_id = self._monitor(item, model)
            results.append({"status": status, "type": item["type"], "severity": item["severity"],
                            "component": item["component"], "variable": item["variable"],
                            **({"id": monitor_id} if monitor_id is not None else {})})  # fmt: skip
        return call_result.SetVariableMonitoring(set_monitoring_result=results)

    def _monitor(self, item: dict[str, Any], model: list[Variable]) -> tuple[str, int | None]:
        """Install one monitor as the station would: its status, and its id when Accepted."""
        variable = next((v for v in model if v.at(item["component"], item["variable"])), None)
        if variable is None:
            known = any(v.at(item["component"]) for v in model)
            return ("UnknownVariable" if known else "UnknownComponent"), None
        if not variable.monitoring:
            return "UnsupportedMonitorType", None
        if not 0 <= item["severity"] <= 9 or (
                variable.limits and item["type"].endswith("Threshold")
                and not variable.limits[0] <= item["value"] <= variable.limits[1]):  # fmt: skip
            return "Rejected", None
        monitors = self._device.monitors
        monitor_id = item.get("id")
        if monitor_id is not None and monitor_id not in monitors:
            return "Rejected", None
        if monitor_id is None and any(variable.at(m["component"], m["variable"]) and m["type"] == item["type"]
                                      and m["severity"] == item["severity"] for m in monitors.values()):  # fmt: skip
            return "Duplicate", None
        monitor_id = monitor_id if monitor_id is not None else next(self._device.ids)
        monitors[monitor_id] = {"id": monitor_id, "component": item["component"], "variable": item["variable"],
                                "type": item["type"], "value": float(item["value"]), "severity": item["severity"],
                                "transaction": item.get("transaction", False), "preconfigured": False}  # fmt: skip
        return "Accepted", monitor_id

    @on(Action.clear_variable_monitoring)
    def on_clear_variable_monitoring(self, id: list[int], **_: Any) -> call_result.ClearVariableMonitoring:
        results = []
        for monitor_id in id:
            monitor = self._device.monitors.get(monitor_id)
            if monitor is None:
                status = "NotFound"
            elif monitor["preconfigured"]:
                status = "Rejected"  # what the station ships with stays (SetMonitoringBase turns it off)
            else:
                del self._device.monitors[monitor_id]
                status = "Accepted"
            results.append({"id": monitor_id, "status": status})
        return call_result.ClearVariableMonitoring(clear_monitoring_result=results)

    @on(Action.set_monitoring_base)
    def on_set_monitoring_base(self, monitoring_base: str, **_: Any) -> call_result.SetMonitoringBase:
        state = self._device
        state.monitoring_base = monitoring_base
        if monitoring_base != "All":  # FactoryDefault and HardWiredOnly drop the custom monitors
            state.monitors = {n: m for n, m in state.monitors.items() if m["preconfigured"]}
        if monitoring_base == "HardWiredOnly":
            state.monitors.clear()
        else:
            state.restore_preconfigured()
        return call_result.SetMonitoringBase(status="Accepted")

    @on(Action.set_monitoring_level)
    def on_set_monitoring_level(self, severity: int, **_: Any) -> call_result.SetMonitoringLevel:
        if not 0 <= severity <= 9:
            return call_result.SetMonitoringLevel(status="Rejected")
        self._device.monitoring_level = severity
        return call_result.SetMonitoringLevel(status="Accepted")

    @on(Action.get_monitoring_report)
    def on_get_monitoring_report(self, request_id: int, component_variable: list[dict] | None = None,
                                 monitoring_criteria: list[str] | None = None,
                                 **_: Any) -> call_result.GetMonitoringReport:  # fmt: skip
        model = device_model(self.sim)
        monitors = list(self._device.monitors.values())
        if component_variable:
            wanted = [v for v in model if any(v.at(cv["component"], cv.get("variable")) for cv in component_variable)]
            monitors = [m for m in monitors if any(v.at(m["component"], m["variable"]) for v in wanted)]
        if monitoring_criteria:
            types = {t for criterion in monitoring_criteria for t in _CRITERIA[criterion]}
            monitors = [m for m in monitors if m["type"] in types]
        if not monitors:
            return call_result.GetMonitoringReport(status="EmptyResultSet")
        data = [{"component": m["component"], "variable": m["variable"], "variable_monitoring": [
            {k: m[k] for k in ("id", "transaction", "value", "type", "severity")}]} for m in monitors]  # fmt: skip
        self._queue(data, lambda n, chunk, tbc: call.NotifyMonitoringReport(
            request_id=request_id, seq_no=n, generated_at=self.sim.now(), tbc=tbc, monitor=chunk))
        return call_result.GetMonitoringReport(status="Accepted")

    @after(Action.get_monitoring_report)
    def after_get_monitoring_report(self, **_: Any) -> None:
        self._send_queued()

    # -- display messages (O) -----------------------------------------------------------------------------

    @on(Action.set_display_message)
    def on_set_display_message(self, message: dict, **_: Any) -> call_result.SetDisplayMessage:
        messages = self._device.messages
        running = {e.tx_id for e in self.sim.evses.values() if e.charging}
        if message["message"]["format"] not in SUPPORTED_FORMATS:
            status = "NotSupportedMessageFormat"
        elif message.get("state") is not None and message["state"] not in SUPPORTED_STATES:
            status = "NotSupportedState"
        elif message.get("transaction_id") and message["transaction_id"] not in running:
            status = "UnknownTransaction"
        elif message["id"] not in messages and len(messages) >= MAX_MESSAGES:
            status = "Rejected"
        else:
            messages[message["id"]] = message
            status = "Accepted"
        return call_result.SetDisplayMessage(status=status)

    @on(Action.get_display_messages)
    def on_get_display_messages(self, request_id: int, id: list[int] | None = None, priority: str | None = None,
                                state: str | None = None, **_: Any) -> call_result.GetDisplayMessages:  # fmt: skip
        found = [m for m in self._device.messages.values()
                 if (not id or m["id"] in id) and priority in (None, m["priority"])
                 and state in (None, m.get("state"))]  # fmt: skip
        if not found:
            return call_result.GetDisplayMessages(status="Unknown")
        self._queue(found, lambda n, chunk, tbc: call.NotifyDisplayMessages(
            request_id=request_id, tbc=tbc, message_info=chunk))
        return call_result.GetDisplayMessages(status="Accepted")

    @after(Action.get_display_messages)
    def after_get_display_messages(self, **_: Any) -> None:
        self._send_queued()

    @on(Action.clear_display_message)
    def on_clear_display_message(self, id: int, **_: Any) -> call_result.ClearDisplayMessage:
        found = self._device.messages.pop(id, None)
        return call_result.ClearDisplayMessage(status="Accepted" if found is not None else "Unknown")

    # -- customer information (N) ---------------------------------------------------------------------------

    @on(Action.customer_information)
    def on_customer_information(self, request_id: int, report: bool, clear: bool,
                                customer_identifier: str | None = None, id_token: dict | None = None,
                                customer_certificate: dict | None = None,
                                **_: Any) -> call_result.CustomerInformation:  # fmt: skip
        customer = customer_identifier or (id_token or {}).get("id_token") or \
            (customer_certificate or {}).get("serial_number")  # fmt: skip
        if customer is None:
            return call_result.CustomerInformation(status="Invalid")
        lines = self._customer_data(customer) if report else []
        if clear:
            self._device.cleared.add(customer)
            lines.append(f"All data of customer {customer} cleared.\n")
        if lines:
            self._queue(lines, lambda n, line, tbc: call.NotifyCustomerInformation(
                data=line[0], seq_no=n, generated_at=self.sim.now(), request_id=request_id, tbc=tbc), size=1)
        return call_result.CustomerInformation(status="Accepted")

    def _customer_data(self, customer: str) -> list[str]:
        """What the station holds about a customer, one line per part."""
        if customer in self._device.cleared:
            return [f"No data held about customer {customer}.\n"]
        lines = [f"Customer {customer} at charging station {self.sim.spec.id}.\n",
                 f"Authorization cache: {customer} Accepted.\n"]  # fmt: skip
        for evse in self.sim.evses.values():
            if evse.id_tag == customer and evse.charging:
                lines.append(f"Session {evse.tx_id} on EVSE {evse.id} since {evse.tx_start}.\n")
        return lines

    @after(Action.customer_information)
    def after_customer_information(self, **_: Any) -> None:
        self._send_queued()

