"""One charger's connection: its receive loop, and the queue of requests the gateway sends it.

Built on the ``ocpp`` library's ChargePoint (routing by ``@on``, payload schemas, message classes), with three
things done our way:
- framing: every frame is classified by :mod:`drivers.ocpp.frames` first, so a malformed one gets the
  spec's CALLERROR in this version's spelling, an unknown action NotImplemented and a known but unhandled
  one NotSupported;
- requests to the charger go through a bounded queue and one sender task with a timeout, one outstanding
  call at a time, never from inside an ``@on`` handler (which would stall the receive loop);
- answers that match no outstanding call are logged and dropped instead of queued forever.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, ClassVar

import ocpp.messages
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import OCPPError, PropertyConstraintViolationError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from drivers.ocpp import frames
from drivers.ocpp.lanes import Lanes, Waiting
from drivers.ocpp.profiles import Capabilities
from drivers.ocpp.recorder import MeterValue, Recorder
from gateway.store import Transaction
from gateway.clock import iso, parse_iso, utcnow
from gateway.commands import CommandError
from gateway.limits import TokenBucket
from gateway.settings import FilesSettings, OcppSettings

log = logging.getLogger(__name__)
wire = logging.getLogger("drivers.ocpp.wire")  # every frame, at DEBUG

WARNINGS_PER_S, WARNINGS_BURST = 0.2, 10
MAX_LOGGED = 80

# Validate in the event loop: the library's default hops to a thread for each message, which costs more
# than the validation of a small payload and adds latency on a Pi.
ocpp.messages.ASYNC_VALIDATION = False


@dataclass
class Links:
    """What a session may reach beyond its charger, filled by the server: the web port (files), the site CA."""

    web_port: int | None = None
    pki: Any = None
    files: FilesSettings = field(default_factory=FilesSettings)  # [files]: the links put in firmware/log requests
    charger_models: list[Any] = field(default_factory=list)  # ChargerModelSettings: what each model may get wrong


class Session(ChargePoint, abc.ABC):
    """What both versions share; :mod:`drivers.ocpp.v16` and :mod:`drivers.ocpp.v201` add the handlers."""

    version: ClassVar[str]
    id: str

    def __init__(self, charger_id: str, ws: ServerConnection, recorder: Recorder, settings: OcppSettings,
                 links: Links | None = None) -> None:  # fmt: skip
        super().__init__(charger_id, ws, response_timeout=settings.call_timeout_s)
        self.links = links or Links()
        self.logger = _LibraryLog(self)  # the library's own log lines about this charger, throttled like ours
        self.ws = ws
        self.recorder = recorder
        self.settings = settings
        self.current: frames.Call | None = None  # the call being handled, exactly as received
        # The session running on each EVSE (one at a time), seeded at connect from the store and kept here,
        # so that the messages of a session never need a store read to find it.
        self.running: dict[int, Transaction] = {}
        self._handled = frozenset(self.route_map)
        self.lanes = Lanes(settings.queue_size)
        # Registered: its BootNotification answered Accepted on this connection, or it sent something else (a
        # charger does so only once it counts itself accepted). Nothing is sent to it before (OCPP 1.6 4.2,
        # 2.0.1 B01-B02: strict chargers refuse, or ignore, any request before their boot is accepted).
        self.registered = asyncio.Event()
        self._boot_accepted = False  # set by the BootNotification handler, made effective once its answer is sent
        self._outstanding: tuple[str, asyncio.Future[frames.CallResult | frames.CallError]] | None = None
        # What one charger can make us do: read its frames no faster than this, log its faults no more than this.
        self._capabilities: Capabilities | None = None
        self._discovering = asyncio.Lock()
        self._inflow = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst)
        self._warnings = TokenBucket(WARNINGS_PER_S, WARNINGS_BURST)
        self._suppressed = 0
        self.tolerated: frozenset[str] = frozenset()  # actions whose schema violations this model is forgiven
        self.model_key: tuple[str, str] | None = None  # (vendor, model), once it said (or the store knows)
        self.steering: Any = None  # drivers.ocpp.steering.Steering, given by the server

    # -- receiving ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes."""
        sender = asyncio.create_task(self._send_requests(), name=f"ocpp-requests-{self.id}")
        quiet = None
        try:
            known = (await self.recorder.store.chargers.info(self.id)).get(self.id, {})
            if known.get("model") and self.model_key is None:  # until it boots: what it said last time
                self.identify(known.get("vendor"), known.get("model"))
            if known.get("last_boot"):
                quiet = asyncio.create_task(self._registered_if_quiet(), name=f"ocpp-quiet-{self.id}")
            async for raw in self.ws:
                if not self._inflow.try_take() and not await self._throttle():
                    break
                await self.route_message(raw)
        except ConnectionClosed as closed:
            if closed.sent is not None and closed.sent.code == 1009:
                log.warning("frame over %d bytes, connection closed charger=%s", self.settings.max_frame_bytes, self.id)
            elif closed.sent is not None and closed.sent.code == 1007:
                log.warning("a text frame that is not UTF-8, connection closed charger=%s", self.id)
        finally:
            if self._suppressed:  # the count a later warning would have carried
                log.warning("charger=%s %d more warnings about this charger were suppressed", self.id, self._suppressed)
                self._suppressed = 0
            for task in (sender, quiet):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (sender, quiet) if t is not None), return_exceptions=True)
            self.lanes.fail_all(CommandError("offline", f"{self.id} disconnected"))

    async def _registered_if_quiet(self) -> None:
        """A charger that booted here before and comes back without a BootNotification (a link that dropped, a
        gateway restart) may stay quiet until its next heartbeat: after a while it is taken as registered."""
        await asyncio.sleep(self.settings.registration_wait_s)
        if not self.registered.is_set():
            log.info("charger quiet since it reconnected, taken as registered (it booted here before) charger=%s",
                     self.id)  # fmt: skip
            self._register()

    def _register(self) -> None:
        if not self.registered.is_set():
            self.registered.set()
            if self.steering is not None:  # how it is steered, as known now, before the load cap looks
                self.steering.publish()
            self.recorder.registered(self.id)

    def boot_accepted(self) -> None:
        """The BootNotification handler accepts the charger; it counts once the answer is on its way."""
        self._boot_accepted = True

    async def _throttle(self) -> bool:
        """Wait for the charger's next message token (not reading meanwhile is TCP backpressure on it); False
        when the connection closed while waiting."""
        self.warn("sending faster than %g messages/s, slowed down", self.settings.rate_limit_per_s)
        closed = asyncio.ensure_future(self.ws.wait_closed())
        try:
            while not self._inflow.try_take():
                await asyncio.wait({closed}, timeout=self._inflow.wait_s())
                if closed.done():
                    return False
            return True
        finally:
            closed.cancel()

    async def route_message(self, raw: str | bytes) -> None:
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug("recv charger=%s %s", self.id, frames.for_log(raw))
        frame = frames.parse(raw, self.version)
        if isinstance(frame, frames.Call):
            await self._answer(frame)
        elif isinstance(frame, (frames.CallResult, frames.CallError)):
            self._resolve(frame)
        else:
            self.warn("malformed frame: %s", frame.reason)
            if frame.reply is not None:
                await self._send(frame.reply)

    async def _answer(self, call: frames.Call) -> None:
        refusal = frames.unknown_action(call, self.version, self._handled)
        if refusal is not None:
            self.warn("unhandled action %r", call.action[:MAX_LOGGED])
            await self._send(refusal)
            return
        self.current = call
        if call.action in self.tolerated:
            await self._forgive(ocpp.messages.Call(call.unique_id, call.action, call.payload))
        try:
            # The library validates the payload against the spec's schema, calls the @on handler, validates and
            # sends our answer; an exception inside the handler becomes an InternalError CALLERROR.
            await self._handle_call(ocpp.messages.Call(call.unique_id, call.action, call.payload))
        except OCPPError as e:
            cause = (e.details or {}).get("cause") if isinstance(e.details, dict) else None
            code = frames.schema_error_code(e.code, str(cause), self.version)
            self.warn("invalid %s: %s %r", call.action, code, str(cause)[:MAX_LOGGED])
            await self._send(frames.call_error(call.unique_id, code, str(cause or e.description), self.version))
        finally:
            self.current = None
        if call.action != "BootNotification" or self._boot_accepted:
            self._boot_accepted = False
            self._register()

    async def _send(self, message: str) -> None:
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug("send charger=%s %s", self.id, frames.for_log(message))
        await self.ws.send(message)

    # -- requests to the charger -------------------------------------------------------------------------

    async def request(self, action: str, payload: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """Send a request when the charger's turn comes (``key``: in the control lane, replacing a waiting request
        with the same key; see :mod:`drivers.ocpp.lanes`); its answer, or CommandError. A request not on its way
        after twice call_timeout_s (long enough for the one in flight to time out; the charger busy with slow
        requests, or not registered yet) times out."""
        if action not in frames.TO_CHARGER[self.version]:
            raise CommandError("invalid", f"{action} is not an OCPP {self.version} request to a charger")
        payload = await self.outgoing(action, payload)
        call = ocpp.messages.Call(str(uuid.uuid4()), action, payload)
        try:
            await ocpp.messages.validate_payload(call, self.version)
            call.to_json()
        except Exception as e:  # OCPPError, or a payload that is not plain JSON
            raise CommandError("invalid", f"the {action} payload does not follow the schema", _cause(e)) from None
        waiting = Waiting(action, call.payload)
        self.lanes.put(waiting, key)
        waited = 2 * self.settings.call_timeout_s
        await asyncio.wait({waiting.future}, timeout=waited)
        if not waiting.sent:
            why = "its turn did not come" if self.registered.is_set() else "it has not booted (registered) yet"
            _settle(waiting.future, error=CommandError("timeout", f"{action} not sent to {self.id}: {why} in "
                                                       f"{waited:g} s"))  # fmt: skip
        return await waiting.future

    async def _send_requests(self) -> None:
        while True:
            await self.registered.wait()
            waiting = await self.lanes.next()
            waiting.sent = True
            action, payload, future = waiting.action, waiting.payload, waiting.future
            try:
                answer = await self._exchange(action, payload)
                await self._keep(action, payload, answer)
                _settle(future, answer)
            except CommandError as e:
                _settle(future, error=e)
            except asyncio.CancelledError:  # the connection ended while this request was on the wire
                _settle(future, error=CommandError("offline", f"{self.id} disconnected before answering {action}"))
                raise
            except Exception:  # a surprise in a library must fail this request only, never the ones after it
                log.exception("request failed charger=%s action=%s", self.id, action)
                _settle(future, error=CommandError("bad_answer", f"{self.id}: {action} could not be completed"))

    async def _exchange(self, action: str, payload: Any) -> dict[str, Any]:
        call = ocpp.messages.Call(str(uuid.uuid4()), action, payload)
        waiter: asyncio.Future[frames.CallResult | frames.CallError] = asyncio.get_running_loop().create_future()
        self._outstanding = (call.unique_id, waiter)
        try:
            await self._send(call.to_json())
            async with asyncio.timeout(self.settings.call_timeout_s):
                answer = await waiter
        except TimeoutError:
            raise CommandError("timeout", f"{self.id} did not answer {action} in {self.settings.call_timeout_s:g} s") from None
        except ConnectionClosed:
            raise CommandError("offline", f"{self.id} disconnected") from None
        finally:
            self._outstanding = None
        if isinstance(answer, frames.CallError):
            raise CommandError(
                "call_error",
                f"{self.id} answered {action} with {answer.code}",
                {"errorCode": answer.code, "errorDescription": answer.description, "errorDetails": answer.details},
            )
        result = ocpp.messages.CallResult(answer.unique_id, answer.payload, action)
        if action in self.tolerated:
            await self._forgive(result)
            return answer.payload
        try:
            await ocpp.messages.validate_payload(result, self.version)
        except Exception as e:  # OCPPError, or what the library's decimal checks raise on odd numbers
            raise CommandError(
                "bad_answer", f"{self.id} answered {action} outside the schema", {"answer": answer.payload, **_cause(e)}
            ) from None
        return answer.payload

    def identify(self, vendor: str | None, model: str | None) -> None:
        """What the charger is (as its boot said, or the store from an earlier one): its model is forgiven the
        schema violations its ``[[charger_models]]`` entry lists, and is remembered for its way of steering."""
        tolerated = frozenset(
            action
            for entry in self.links.charger_models
            if entry.model == model and entry.vendor in (None, vendor)
            for action in entry.tolerate
        )
        for action, handlers in self.route_map.items():
            handlers["_skip_schema_validation"] = action in tolerated
        if tolerated and tolerated != self.tolerated:
            log.info("schema violations tolerated charger=%s model=%s actions=%s", self.id, model, sorted(tolerated))
        self.tolerated = tolerated
        self.model_key = (vendor or "", model) if model else None

    async def _forgive(self, message: ocpp.messages.Call | ocpp.messages.CallResult) -> None:
        """Validate a message of a tolerated action ourselves: a violation is logged, and the message goes on."""
        try:
            await ocpp.messages.validate_payload(message, self.version)
        except Exception as e:
            self.warn("tolerated schema violation in %s: %s", message.action, _cause(e)["cause"][:MAX_LOGGED])

    async def _keep(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        try:
            await self.answered(action, payload, answer)
        except Exception:  # the charger did what it said: its answer is still the operator's to see
            log.exception("could not keep the answer to %s charger=%s", action, self.id)

    # -- what the concern mixins (certificates, files, badges, ...) hook into; each calls super() ----------

    async def outgoing(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A request on its way to the charger, before validation: fill in what only the gateway knows (the
        URL of a file it serves, ...)."""
        return payload

    async def answered(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        """The charger answered a request within the schema: keep what was agreed (a profile it accepted, the
        local list version, a reservation, ...)."""

    def _resolve(self, frame: frames.CallResult | frames.CallError) -> None:
        if self._outstanding is not None and self._outstanding[0] == frame.unique_id:
            waiter = self._outstanding[1]
            if not waiter.done():
                waiter.set_result(frame)
            return
        self.warn("answer to no outstanding request, id %r", frame.unique_id[:MAX_LOGGED])

    def warn(self, message: str, *args: Any, exc_info: bool = False) -> None:
        """A warning about this charger's behaviour, at most WARNINGS_PER_S of them: a misbehaving charger must
        not fill the SD card. Text the charger chose is logged with %r, cut to MAX_LOGGED characters."""
        if not self._warnings.try_take():
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} more warnings about this charger were suppressed)"
            self._suppressed = 0
        log.warning("charger=%s " + message, self.id, *args, exc_info=exc_info)

    @property
    def known_capabilities(self) -> Capabilities | None:
        """What it said it takes, if it was asked on this connection already."""
        return self._capabilities

    async def capabilities(self) -> Capabilities:
        """What the charger accepts in a charging profile, asked once per connection; defaults (amperes,
        stack 8) when it will not say."""
        async with self._discovering:
            if self._capabilities is None:
                action, payload = self.capabilities_request()
                try:
                    self._capabilities = self.read_capabilities(await self.request(action, payload, key="capabilities"))
                except (CommandError, KeyError, TypeError) as e:
                    self.warn("does not say which charging profiles it takes (%s): amperes assumed", e)
                    self._capabilities = Capabilities()
            return self._capabilities

    @abc.abstractmethod
    def capabilities_request(self) -> tuple[str, dict[str, Any]]:
        """How this version asks what charging profiles a charger takes."""

    @abc.abstractmethod
    def read_capabilities(self, answer: dict[str, Any]) -> Capabilities:
        """... and how it reads the answer."""

    # -- helpers for the version modules ------------------------------------------------------------------

    def started(self, tx: Transaction) -> None:
        if tx.evse is not None:
            self.running[tx.evse] = tx

    def stopped(self, tx: Transaction) -> None:
        if tx.evse is not None and self.running.get(tx.evse, tx).id == tx.id:
            self.running.pop(tx.evse, None)

    def running_where(self, match: Callable[[Transaction], bool]) -> Transaction | None:
        return next((tx for tx in self.running.values() if match(tx)), None)

    def meter_values(self, raw: Any) -> list[MeterValue]:
        """MeterValue objects of the call being handled, camelCase as received."""
        return [MeterValue(when(mv["timestamp"]), mv.get("sampledValue", [])) for mv in raw or []]

    @staticmethod
    def now() -> str:
        return iso(utcnow())


class _LibraryLog:
    """What the ``ocpp`` library logs about a session: frames at DEBUG on the wire logger, failures (with the
    whole message, and a stack trace for each) as this charger's throttled warnings, cut short."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def debug(self, message: str, *args: Any) -> None:
        if wire.isEnabledFor(logging.DEBUG):
            wire.debug(message, *(frames.for_log(a) if isinstance(a, (str, bytes)) else a for a in args))

    info = debug

    def warning(self, message: str, *args: Any, exc_info: bool = False) -> None:
        text = (message % args) if args else message
        self._session.warn("%s", text[: MAX_LOGGED * 4], exc_info=exc_info)

    error = warning

    def exception(self, message: str, *args: Any) -> None:
        self.warning(message, *args, exc_info=True)


def when(text: str) -> Any:
    """A timestamp from a charger; one that is not ISO 8601 is an invalid value, not a crash."""
    try:
        return parse_iso(text)
    except (ValueError, TypeError, AttributeError):
        raise PropertyConstraintViolationError(description=f"{text!r} is not an ISO 8601 date-time") from None


def _cause(error: Exception) -> dict[str, Any]:
    if isinstance(error, OCPPError):
        details = error.details if isinstance(error.details, dict) else {}
        return {"cause": str(details.get("cause") or error.description)}
    return {"cause": f"{type(error).__name__}: {error}"}


def _settle(future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
