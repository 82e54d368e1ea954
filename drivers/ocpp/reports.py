"""What a charger reports about itself: security events (1.6 security extension and 2.0.1), and in 2.0.1 its
device model (NotifyReport), monitors (NotifyMonitoringReport), display messages (NotifyDisplayMessages) and
customer information (NotifyCustomerInformation).

Every part is committed before it is answered. What the gateway's own requests change (SetVariables,
SetVariableMonitoring, SetDisplayMessage, ...) is kept from the charger's answer, in ``answered``.

Odd content, case by case:
- a component on an EVSE or connector no charger has (beyond MAX_EVSES or MAX_CONNECTORS, negative), or a
  negative seqNo: PropertyConstraintViolation, and nothing of that message is stored -- the charger is broken,
  and half a report stored would hide it;
- an EVSE in range that the site's config does not list: accepted and stored, the device model is the
  charger's own word on what it has, and a config may lag behind;
- more than the store keeps for one charger (the bounds in gateway/store/reports.py): accepted, the excess
  dropped and counted on its report, a warning logged -- a refusal would only make the charger send it again;
- a report nobody asked for through the gateway (a retry, another CSMS behind the relay): stored all the same.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import on

from drivers.ocpp.session import MAX_LOGGED, Session, when
from gateway.model import Site
from gateway.store.reports import (
    CUSTOMER_INFORMATION,
    DEVICE_MODEL,
    DISPLAY_MESSAGES,
    MONITORING,
    Attribute,
    Monitor,
    Part,
    Place,
    Reports,
)

log = logging.getLogger(__name__)

# Security events the spec does not mark critical (OCPP 2.0.1 appendix 1, and their 1.6 security whitepaper
# names); every other one -- a vendor's own included -- is taken as critical: logged at WARNING.
NOT_CRITICAL = frozenset({
    "FailedToAuthenticateAtCsms", "CsmsFailedToAuthenticate", "FailedToAuthenticateAtCentralSystem",
    "CentralSystemFailedToAuthenticate", "ReconfigurationOfSecurityParameters", "InvalidMessages",
    "AttemptedReplayAttacks",
})  # fmt: skip


class _SecurityEvents(Session):
    """SecurityEventNotification, the same message in both versions."""

    @property
    def _reports(self) -> Reports:
        return self.recorder.store.reports

    @on("SecurityEventNotification")
    async def on_security_event_notification(self, type: str, timestamp: str, **_: Any) -> Any:
        tech_info = self.current.payload.get("techInfo")
        critical = type not in NOT_CRITICAL
        await self._reports.security_event(self.id, type, when(timestamp), tech_info, critical)
        (log.warning if critical else log.info)("security event charger=%s type=%r tech_info=%r", self.id,
                                                type[:MAX_LOGGED], (tech_info or "")[:MAX_LOGGED])  # fmt: skip
        return self._call_result.SecurityEventNotification()


class Reports16(_SecurityEvents):
    """OCPP 1.6J: the security extension's SecurityEventNotification."""


class Reports201(_SecurityEvents):
    """OCPP 2.0.1: the B, N and O blocks' reports, and what the gateway's requests about them changed."""

    @on("NotifyReport")
    async def on_notify_report(self, **_: Any) -> Any:
        found = [a for item in self.current.payload.get("reportData") or [] for a in reported_attributes(item)]
        self._dropped(await self._reports.device_model_part(self.id, part(self.current.payload), found),
                      "device model attributes")  # fmt: skip
        return self._call_result.NotifyReport()

    @on("NotifyMonitoringReport")
    async def on_notify_monitoring_report(self, **_: Any) -> Any:
        found = [m for item in self.current.payload.get("monitor") or [] for m in reported_monitors(item)]
        self._dropped(await self._reports.monitoring_part(self.id, part(self.current.payload), found), "monitors")
        return self._call_result.NotifyMonitoringReport()

    @on("NotifyDisplayMessages")
    async def on_notify_display_messages(self, **_: Any) -> Any:
        messages = self.current.payload.get("messageInfo") or []
        self._dropped(await self._reports.display_messages_part(self.id, part(self.current.payload), messages),
                      "display messages")  # fmt: skip
        return self._call_result.NotifyDisplayMessages()

    @on("NotifyCustomerInformation")
    async def on_notify_customer_information(self, data: str, **_: Any) -> Any:
        if not await self._reports.customer_information_part(self.id, part(self.current.payload), data):
            self._dropped(1, "parts of a customer information report")
        return self._call_result.NotifyCustomerInformation()

    def _dropped(self, count: int, what: str) -> None:
        if count:
            self.warn("stores no more %s: %d new ones dropped", what, count)

    # -- what the charger agreed to ----------------------------------------------------------------------

    async def answered(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        await super().answered(action, payload, answer)
        if action in _REPORT_REQUESTS:
            await self._report_asked(action, payload, answer)
        elif action in _KEEP:
            await _KEEP[action](self, payload, answer)

    async def _variables_set(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        sent = {(Place.of(d["component"], d["variable"]), d.get("attributeType", "Actual")): d["attributeValue"]
                for d in payload["setVariableData"]}  # fmt: skip
        keys = [(Place.of(r["component"], r["variable"]), r.get("attributeType", "Actual"))
                for r in answer["setVariableResult"] if r["attributeStatus"] == "Accepted"]  # fmt: skip
        await self._confirm([Attribute(place, kind, sent[place, kind]) for place, kind in keys
                             if (place, kind) in sent])  # fmt: skip

    async def _variables_got(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        await self._confirm([Attribute(Place.of(r["component"], r["variable"]), r.get("attributeType", "Actual"),
                                       r["attributeValue"])
                             for r in answer["getVariableResult"]
                             if r["attributeStatus"] == "Accepted" and "attributeValue" in r])  # fmt: skip

    async def _confirm(self, attributes: list[Attribute]) -> None:
        if attributes:
            self._dropped(await self._reports.set_attributes(self.id, attributes), "device model attributes")

    async def _monitors_set(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        sent = payload["setMonitoringData"]
        monitors = []
        for n, result in enumerate(answer["setMonitoringResult"]):
            if result["status"] != "Accepted":
                continue
            asked = _asked_monitor(result, sent, n)
            monitor_id = result.get("id", (asked or {}).get("id"))
            if asked is None or monitor_id is None:
                self.warn("accepted a monitor it gave no id (or one it was not asked for): not kept")
                continue
            where = Place.of(result["component"], result["variable"])
            monitors.append(Monitor(monitor_id, where, result["type"], result["severity"], float(asked["value"]),
                                    asked.get("transaction", False)))  # fmt: skip
        if monitors:
            self._dropped(await self._reports.set_monitors(self.id, monitors), "monitors")

    async def _monitors_cleared(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        # NotFound: the charger has no such monitor (any more), so neither do we.
        gone = [r["id"] for r in answer["clearMonitoringResult"] if r["status"] in ("Accepted", "NotFound")]
        if gone:
            await self._reports.clear_monitors(self.id, gone)

    async def _monitoring_base(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        if answer["status"] != "Accepted":
            return
        base = payload["monitoringBase"]
        await self._reports.monitoring_settings(self.id, base=base)
        if base != "All":
            # The custom monitors are gone and which preconfigured ones remain active is the charger's to say
            # (a GetMonitoringReport tells): what we knew no longer holds.
            await self._reports.clear_monitors(self.id)

    async def _monitoring_level(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        if answer["status"] == "Accepted":
            await self._reports.monitoring_settings(self.id, level=payload["severity"])

    async def _message_set(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        if answer["status"] == "Accepted":
            self._dropped(await self._reports.set_display_message(self.id, payload["message"]),
                          "display messages")  # fmt: skip

    async def _message_cleared(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        if answer["status"] == "Accepted":
            await self._reports.clear_display_message(self.id, payload["id"])

    async def _report_asked(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        """A request for a report, answered: the report is listed (complete at once when nothing will come)."""
        status = answer["status"]
        if action == "GetBaseReport":
            kind, asked, whole = DEVICE_MODEL, payload["reportBase"], payload["reportBase"] == "FullInventory"
        elif action == "GetReport":
            kind, asked, whole = DEVICE_MODEL, "GetReport", False
        elif action == "GetMonitoringReport":
            kind, asked = MONITORING, "GetMonitoringReport"
            whole = not payload.get("componentVariable") and not payload.get("monitoringCriteria")
        elif action == "GetDisplayMessages":
            kind, asked = DISPLAY_MESSAGES, "GetDisplayMessages"
            whole = not any(payload.get(k) for k in ("id", "priority", "state"))
        else:  # CustomerInformation: what was asked, never whose data (that is the charger's to report)
            kind, asked, whole = CUSTOMER_INFORMATION, "+".join(k for k in ("report", "clear") if payload[k]), False
        empty = status == ("Unknown" if kind == DISPLAY_MESSAGES else "EmptyResultSet")
        await self._reports.asked(self.id, kind, payload["requestId"], asked, status, whole=whole, empty=empty)


# The requests whose answer changes what we know, and who keeps it.
_REPORT_REQUESTS = frozenset({"GetBaseReport", "GetReport", "GetMonitoringReport", "GetDisplayMessages",
                              "CustomerInformation"})  # fmt: skip
_KEEP = {
    "SetVariables": Reports201._variables_set,
    "GetVariables": Reports201._variables_got,
    "SetVariableMonitoring": Reports201._monitors_set,
    "ClearVariableMonitoring": Reports201._monitors_cleared,
    "SetMonitoringBase": Reports201._monitoring_base,
    "SetMonitoringLevel": Reports201._monitoring_level,
    "SetDisplayMessage": Reports201._message_set,
    "ClearDisplayMessage": Reports201._message_cleared,
}


# -- from the wire (camelCase, schema-valid) to the store's records; pure ----------------------------------


def part(raw: dict[str, Any]) -> Part:
    seq_no = raw.get("seqNo")
    if seq_no is not None and seq_no < 0:
        raise PropertyConstraintViolationError(description=f"seqNo {seq_no} is negative")
    generated = raw.get("generatedAt")
    return Part(raw["requestId"], seq_no, bool(raw.get("tbc", False)), when(generated) if generated else None)


def place(component: dict[str, Any], variable: dict[str, Any]) -> Place:
    """A component's place, refused when it is on an EVSE or connector no charger has."""
    found = Place.of(component, variable)
    if "evse" in component:
        try:
            Site.check_connector(found.evse, found.connector or None)
        except ValueError as e:
            raise PropertyConstraintViolationError(description=f"component {found.component!r}: {e}") from None
    return found


def reported_attributes(item: dict[str, Any]) -> list[Attribute]:
    """The attributes of one ReportData, with the spec's defaults for what it leaves out."""
    where = place(item["component"], item["variable"])
    characteristics = item.get("variableCharacteristics")
    return [Attribute(where, a.get("type", "Actual"), a.get("value"), a.get("mutability", "ReadWrite"),
                      a.get("persistent", False), a.get("constant", False), characteristics)
            for a in item["variableAttribute"]]  # fmt: skip


def reported_monitors(item: dict[str, Any]) -> list[Monitor]:
    where = place(item["component"], item["variable"])
    return [Monitor(m["id"], where, m["type"], m["severity"], float(m["value"]), m["transaction"])
            for m in item["variableMonitoring"]]  # fmt: skip


def _asked_monitor(result: dict[str, Any], sent: list[dict[str, Any]], n: int) -> dict[str, Any] | None:
    """The SetMonitoringData a result answers: the one at the same position, else the first for the same
    variable, type and severity."""

    def same(data: dict[str, Any]) -> bool:
        return (Place.of(data["component"], data["variable"]) == Place.of(result["component"], result["variable"])
                and (data["type"], data["severity"]) == (result["type"], result["severity"]))  # fmt: skip

    if n < len(sent) and same(sent[n]):
        return sent[n]
    return next((data for data in sent if same(data)), None)
