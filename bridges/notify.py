"""Alarm notifications out: e-mail (SMTP, aiosmtplib) and webhooks (an HTTP POST, HMAC-signed), from the store's
queue, so that an outage of either loses none.

The annunciator queues a notification per route ([[notify]]) and channel in the transaction of the alarm's
transition. Here, per route and channel: the queue waits ``gather_s`` after its oldest notification, so that alarms
rising together go together -- ``digest_after`` or more in one digest (a network cut taking 200 chargers offline
is one e-mail, not 200), fewer one message each. A failed delivery is tried again after a doubling wait (up to
``retry_max_s``); what finally goes out after a failure is marked late (``[late]`` in the subject, ``"late": true``
in the webhook). Each notification keeps its delivery state (``GET /api/v1/alarms/notifications``).

Templates (``subject``, ``body``, ``webhook_body``) are Jinja2, rendered in its sandbox (a template cannot reach
Python's insides), with: ``gateway``, ``kind`` (raised or returned), ``alarm`` (the record: ``message``, ``level``,
``severity``, ``point``, ``value``, ``context``, ``state``, ...), ``time`` (in the site's time zone), ``link`` (the
alarm in the console), ``digest``, ``late``, ``count`` and ``items`` (each with ``kind``, ``alarm``, ``time``,
``link``). The webhook's default body is JSON: ``{"gateway", "digest", "late", "text", "notifications": [{"kind",
"time", "link", "alarm"}]}``; its signature is ``X-Evedge-Signature: sha256=<hex HMAC-SHA256 of the body>`` with
``webhook_secret``, and ``X-Evedge-Delivery`` names the delivery (the same on a retry) for receivers that drop
duplicates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import ssl
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from zoneinfo import ZoneInfo

import aiosmtplib
import httpx
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from gateway.clock import parse_iso, utcnow
from gateway.settings import NotifySettings, Settings, split_listen
from gateway.store import Store
from gateway.store.alarms import Notification
from gateway.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

FIRST_RETRY_S = 2.0
MAX_BATCH = 1000

SUBJECT = ("{% if late %}[late] {% endif %}[evedge {{ gateway }}] "
           "{% if digest %}{{ count }} alarms{% elif kind == 'returned' %}Back to normal: {{ alarm.message }}"
           "{% else %}Alarm L{{ alarm.level }}: {{ alarm.message }}{% endif %}")  # fmt: skip
BODY = """\
{% if late %}Sent late: the notification could not be delivered when the alarm changed.

{% endif %}{% for item in items %}{{ item.time }}  {{ 'BACK TO NORMAL' if item.kind == 'returned' else 'ALARM' }} \
level {{ item.alarm.level }}  {{ item.alarm.message }}
    alarm {{ item.alarm.id }} on {{ item.alarm.point }} = {{ item.alarm.value }} ({{ item.alarm.state }})
{% for name, value in item.alarm.context.items() if value %}    {{ name }}: {{ value }}
{% endfor %}    {{ item.link }}
{% endfor %}
-- evedge {{ gateway }}
"""


def environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


def check(settings: Settings) -> list[str]:
    """Templates that do not compile, for check-config."""
    env = environment()
    problems = []
    for n, route in enumerate(settings.notify):
        for key in ("subject", "body", "webhook_body"):
            text = getattr(route, key)
            if text is not None:
                try:
                    env.from_string(text)
                except TemplateSyntaxError as e:
                    problems.append(f"notify[{n}].{key}: not a valid template: {e.message} (line {e.lineno})")
    return problems


class Notifier:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.routes = {f"notify[{n}]": route for n, route in enumerate(settings.notify)}
        self.tz = ZoneInfo(settings.site.timezone)
        self.gateway = settings.gateway.id
        env = environment()
        self.templates = {name: {key: env.from_string(getattr(route, key) or default)
                                 for key, default in (("subject", SUBJECT), ("body", BODY),
                                                      ("webhook_body", route.webhook_body or ""))}
                          for name, route in self.routes.items()}  # fmt: skip
        self.defaults = {"subject": env.from_string(SUBJECT), "body": env.from_string(BODY)}
        self.link_base = settings.web.public_url or _console_url(settings.web.listen)
        self.sent = 0  # messages (a digest is one)
        self.failed_attempts = 0
        self.last_error: str | None = None
        self._failing: dict[tuple[str, str], int] = defaultdict(int)  # (route, channel) -> failures in a row

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
            while True:
                self.store.alarms.queued.clear()
                wake = await self.deliver_due(http)
                next_try = await self.store.alarms.next_try()
                if next_try is not None:
                    at = parse_iso(next_try)
                    wake = at if wake is None else min(wake, at)
                timeout = None if wake is None else max(0.05, (wake - utcnow()).total_seconds())
                try:
                    await asyncio.wait_for(self.store.alarms.queued.wait(), timeout)
                except TimeoutError:
                    pass
                raise_if_cancelled()

    async def deliver_due(self, http: httpx.AsyncClient) -> datetime | None:
        """Deliver what is due; returns when a queue still gathering will be."""
        now = utcnow()
        groups: dict[tuple[str, str], list[Notification]] = defaultdict(list)
        for item in await self.store.alarms.due(now, MAX_BATCH):
            groups[(item.route, item.channel)].append(item)
        gathering = None
        for (route_name, channel), items in groups.items():
            route = self.routes.get(route_name)
            if route is None:  # its [[notify]] entry is gone: nobody to send it to
                await self.store.alarms.sent([i.id for i in items], "no-route", now, False)
                continue
            ready = parse_iso(items[0].created) + timedelta(seconds=route.gather_s)
            if items[0].attempts == 0 and ready > now:
                gathering = ready if gathering is None else min(gathering, ready)
                continue
            await self._deliver(http, route_name, route, channel, items)
        return gathering

    async def _deliver(self, http: httpx.AsyncClient, name: str, route: NotifySettings, channel: str,
                       items: list[Notification]) -> None:  # fmt: skip
        late = any(i.attempts > 0 for i in items)
        batches = [items] if len(items) >= route.digest_after else [[i] for i in items]
        for batch in batches:
            key = (name, channel)
            delivery = f"{batch[0].id}-{len(batch)}"
            try:
                if channel == "email":
                    await self._email(name, route, batch, late)
                else:
                    await self._webhook(http, name, route, batch, late, delivery)
            except Exception as e:  # noqa: BLE001 -- any failure of the peer: try again later
                raise_if_cancelled()
                self.failed_attempts += 1
                self._failing[key] += 1
                self.last_error = f"{channel} {name}: {type(e).__name__}: {e}"
                wait = min(FIRST_RETRY_S * 2 ** (self._failing[key] - 1), route.retry_max_s)
                if self._failing[key] == 1:
                    log.warning("alarm notification not delivered, trying again route=%s channel=%s error=%s",
                                name, channel, self.last_error)  # fmt: skip
                await self.store.alarms.failed([i.id for i in batch], self.last_error, utcnow() + timedelta(seconds=wait))
                continue
            if self._failing.pop(key, 0):
                log.info("alarm notifications delivered again route=%s channel=%s", name, channel)
            self.last_error = None
            self.sent += 1
            await self.store.alarms.sent([i.id for i in batch], delivery, utcnow(), late)

    # -- rendering ----------------------------------------------------------------------------------------------

    def context(self, items: list[Notification], late: bool) -> dict[str, Any]:
        rows = [{"kind": i.kind, "alarm": i.record, "time": self._time(i.created),
                 "link": f"{self.link_base}/alarms/{i.alarm}"} for i in items]  # fmt: skip
        first = rows[0]
        return {"gateway": self.gateway, "digest": len(rows) > 1, "late": late, "count": len(rows), "items": rows,
                "kind": first["kind"], "alarm": first["alarm"], "time": first["time"], "link": first["link"]}  # fmt: skip

    def render(self, name: str, key: str, context: dict[str, Any]) -> str:
        try:
            return self.templates[name][key].render(context)
        except Exception as e:  # noqa: BLE001 -- a template that breaks on these values: the default still tells
            log.warning("alarm template failed, the default is used route=%s template=%s: %s", name, key, e)
            return self.defaults[key].render(context) if key in self.defaults else ""

    def _time(self, created: str) -> str:
        return parse_iso(created).astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S %Z")

    # -- channels -------------------------------------------------------------------------------------------

    async def _email(self, name: str, route: NotifySettings, items: list[Notification], late: bool) -> None:
        smtp = self.settings.smtp
        if smtp is None:
            raise RuntimeError("no [smtp] section")
        context = self.context(items, late)
        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = ", ".join(route.email)
        message["Subject"] = " ".join(self.render(name, "subject", context).split())  # one line
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="evedge")
        message.set_content(self.render(name, "body", context))
        tls = ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
        await aiosmtplib.send(
            message, hostname=smtp.host, port=smtp.port, username=smtp.user,
            password=smtp.password.get_secret_value() if smtp.password else None,
            use_tls=smtp.security == "tls", start_tls=smtp.security == "starttls", tls_context=tls,
            timeout=smtp.timeout_s,
        )  # fmt: skip

    async def _webhook(self, http: httpx.AsyncClient, name: str, route: NotifySettings, items: list[Notification],
                       late: bool, delivery: str) -> None:  # fmt: skip
        assert route.webhook is not None
        context = self.context(items, late)
        if route.webhook_body:
            body = self.render(name, "webhook_body", context).encode()
            content_type = route.webhook_content_type
        else:
            document = {"gateway": self.gateway, "digest": context["digest"], "late": late,
                        "text": self.render(name, "subject", context),
                        "notifications": context["items"]}  # fmt: skip
            body = json.dumps(document, separators=(",", ":"), default=str).encode()
            content_type = "application/json"
        headers = {"Content-Type": content_type, "X-Evedge-Delivery": delivery, "User-Agent": "evedge"}
        if route.webhook_secret is not None:
            digest = hmac.new(route.webhook_secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
            headers["X-Evedge-Signature"] = f"sha256={digest}"
        answer = await http.post(route.webhook, content=body, headers=headers)
        if not answer.is_success:
            raise RuntimeError(f"HTTP {answer.status_code}")

    def health(self) -> dict[str, Any]:
        return {"status": "degraded" if self._failing else "ok", "sent": self.sent,
                "failed_attempts": self.failed_attempts, "last_error": self.last_error}  # fmt: skip


def _console_url(listen: str) -> str:
    host, port = split_listen(listen)
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"
