"""Languages of what people read (the console, exported files): gettext catalogues, and numbers, dates and units
formatted per locale (``22,5 kW`` in French).

English is the source language: the messages are the English text. Other languages are ``.po`` catalogues under
``gateway/locale/{lang}/LC_MESSAGES/messages.po``, read once at first use (no compiled ``.mo`` in the repo).
``tools/i18n`` extracts the messages of the code and templates and updates the catalogues; a test fails while
one has no translation.
"""

from __future__ import annotations

import functools
import gettext
import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages import mofile, pofile
from babel.numbers import format_decimal

from gateway.clock import parse_iso

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = {"en": "English", "fr": "Français"}
DEFAULT_LANGUAGE = "en"
DASH = "–"  # what a value nobody knows reads as
NBSP = "\u00a0"  # between a number and its unit: they stay on one line


def N_(message: str) -> str:  # noqa: N802 -- the gettext convention
    """Marks a message for extraction where it cannot be translated yet (a module constant)."""
    return message


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalogue of a language (English: the messages themselves)."""
    if lang not in LANGUAGES or lang == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = pofile.read_po(source, locale=lang)
    compiled = io.BytesIO()
    mofile.write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def negotiate(accept_language: str | None) -> str:
    """The language to use for a browser's Accept-Language header (``fr-FR,fr;q=0.9,en;q=0.8``)."""
    ranked: list[tuple[float, int, str]] = []
    for n, item in enumerate((accept_language or "")[:512].split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((-quality, n, tag.strip().lower().split("-")[0]))
    for quality, _, lang in sorted(ranked):
        if quality < 0 and lang in LANGUAGES:
            return lang
    return DEFAULT_LANGUAGE


# How many decimals a unit is shown with, and the unit it is shown in: power in kW, energy in kWh.
_SHOWN = {"W": ("kW", 1000.0, 1), "Wh": ("kWh", 1000.0, 2), "A": ("A", 1.0, 1), "V": ("V", 1.0, 0),
          "%": ("%", 1.0, 0), "Hz": ("Hz", 1.0, 2), "s": ("s", 1.0, 0), "B": ("B", 1.0, 0)}  # fmt: skip


@dataclass(frozen=True)
class Formats:
    """Numbers, units, dates and durations for one language, times in the site's time zone."""

    lang: str = DEFAULT_LANGUAGE
    timezone: str = "UTC"

    @functools.cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def number(self, value: float | int | None, decimals: int = 1) -> str:
        if value is None or isinstance(value, bool) or not math.isfinite(value):
            return DASH
        pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
        return format_decimal(value, format=pattern, locale=self.lang)

    def quantity(self, value: float | int | None, unit: str | None) -> str:
        """A value of a point's unit (W, Wh, A, ...) as people read it: ``22,5 kW``, ``12.35 kWh``."""
        if unit is None:
            return self.number(value, 0 if isinstance(value, int) else 2)
        shown, divisor, decimals = _SHOWN.get(unit, (unit, 1.0, 2))
        if value is None or isinstance(value, bool) or not math.isfinite(value):
            return DASH
        return f"{self.number(value / divisor, decimals)}{NBSP}{shown}"

    def power(self, watts: float | None) -> str:
        return self.quantity(watts, "W")

    def energy(self, wh: float | None) -> str:
        return self.quantity(wh, "Wh")

    def moment(self, ts: str | datetime | None, length: str = "short") -> str:
        """A point in time in the site's zone: ``short`` for tables, ``medium`` (with seconds) for details."""
        when = parse_ts(ts)
        if when is None:
            return DASH
        return format_datetime(when, length, tzinfo=self.tz, locale=self.lang)

    def duration(self, seconds: float | None) -> str:
        """``2 h 05 min``, ``7 min``, ``40 s``: the same in both languages."""
        if seconds is None or not math.isfinite(seconds) or seconds < 0:
            return DASH
        seconds = int(seconds)
        if seconds < 60:
            return f"{seconds}{NBSP}s"
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours}{NBSP}h{NBSP}{minutes:02d}{NBSP}min" if hours else f"{minutes}{NBSP}min"


def parse_ts(ts: str | datetime | None) -> datetime | None:
    """A stored time (ISO 8601 text, UTC) as an aware datetime; None when absent or unreadable."""
    if ts is None or isinstance(ts, datetime):
        return ts
    try:
        return parse_iso(ts)
    except ValueError:
        return None
