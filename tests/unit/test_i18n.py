"""Every message of the console and the exported files has its French translation; numbers, dates and units
read as each language writes them; the browser's language is honoured."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from babel.messages import pofile
from babel.messages.extract import extract_from_dir

from gateway.i18n import LANGUAGES, LOCALE_DIR, NBSP, Formats, negotiate, translations
from tests.conftest import ROOT

METHODS = [("gateway/**.py", "python"), ("gateway/web/console/templates/**.html", "jinja2")]
OPTIONS = {"gateway/web/console/templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}


def messages_in_the_code() -> set[str | tuple[str, ...]]:
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(ROOT), METHODS, options_map=OPTIONS):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_every_message_is_translated(lang):
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalogue = pofile.read_po(source, locale=lang)
    translated = {}
    for m in catalogue:
        if m.id:
            strings = [m.string] if isinstance(m.string, str) else list(m.string)
            translated[m.id if isinstance(m.id, str) else tuple(m.id)] = all(strings) and not m.fuzzy
    code = messages_in_the_code()
    assert len(code) > 150  # the extraction found the console's messages at all
    missing = sorted(str(m) for m in code if not translated.get(m))
    assert not missing, f"untranslated in {lang} (run tools/i18n, then translate): {missing}"


def test_a_translation_is_used():
    assert translations("fr").gettext("Grid import") == "Soutirage réseau"
    assert translations("en").gettext("Grid import") == "Grid import"
    assert translations("fr").ngettext("%(num)d phase", "%(num)d phases", 3) % {"num": 3} == "3 phases"


def test_units_numbers_and_times_per_language():
    fr, en = Formats("fr", "Europe/Paris"), Formats("en", "Europe/Paris")
    assert fr.power(22500) == f"22,5{NBSP}kW" and en.power(22500) == f"22.5{NBSP}kW"
    assert fr.energy(12345678) == f"12\u202f345,68{NBSP}kWh" and en.energy(12345678) == f"12,345.68{NBSP}kWh"
    assert fr.quantity(16.04, "A") == f"16,0{NBSP}A" and fr.quantity(None, "W") == "–"
    moment = datetime(2026, 12, 3, 17, 5, 9, tzinfo=UTC)  # 18:05 in Paris
    assert fr.moment(moment) == "03/12/2026 18:05"
    assert en.moment("2026-12-03T17:05:09.000Z", "medium").startswith("Dec 3, 2026, 6:05:09")
    assert fr.duration(3 * 3600 + 5 * 60 + 7) == f"3{NBSP}h{NBSP}05{NBSP}min" and fr.duration(42) == f"42{NBSP}s"


@pytest.mark.parametrize("header, lang", [
    ("fr-FR,fr;q=0.9,en;q=0.8", "fr"), ("en-GB,en;q=0.9", "en"), ("de-DE,de;q=0.9,fr;q=0.5", "fr"),
    ("de-DE", "en"), (None, "en"), ("", "en"), ("fr;q=0.2,en;q=0.9", "en"), ("fr;q=bad,en", "en"), ("*", "en"),
])  # fmt: skip
def test_the_browsers_language(header, lang):
    assert negotiate(header) == lang
