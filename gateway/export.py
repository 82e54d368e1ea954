"""Charging sessions as files: CSV and Excel (.xlsx), one row writer for both.

The rows come from their own read-only database connection, a batch at a time (``gateway.store.db.read_rows``),
and are written as they come: 100k sessions take no more memory than a few. Both writers are plain functions
for a worker thread -- the event loop that serves the chargers never runs them.

Two audiences: machines (the API's and the CLI's CSV: field names, UTC ISO 8601 text, as the JSON says it) and
people (the console's files and every .xlsx: headers in their language, times in the site's zone, typed cells
in Excel, and a CSV that Excel reads in their locale -- ';' and a decimal comma in French).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import xlsxwriter

from gateway.i18n import N_, Formats, parse_ts, translations
from gateway.store.transactions import EXPORT_FIELDS

# Every field's header (a message to translate) and kind: time, int, float or text.
COLUMNS: dict[str, tuple[str, str]] = {
    "id": (N_("Session"), "int"),
    "charger": (N_("Charger"), "text"),
    "evse": (N_("EVSE"), "int"),
    "connector": (N_("Connector"), "int"),
    "id_tag": (N_("Badge"), "text"),
    "started_at": (N_("Start"), "time"),
    "stopped_at": (N_("Stop"), "time"),
    "meter_start_wh": (N_("Meter at start (Wh)"), "float"),
    "meter_stop_wh": (N_("Meter at stop (Wh)"), "float"),
    "energy_wh": (N_("Energy (Wh)"), "float"),
    "soc_start": (N_("SoC at start (%)"), "float"),
    "soc_end": (N_("SoC at stop (%)"), "float"),
    "stop_reason": (N_("Stop reason"), "text"),
}
assert tuple(COLUMNS) == EXPORT_FIELDS
XLSX_MAX_ROWS = 1_048_575  # a worksheet's rows, less the header
CSV_BATCH = 500  # rows per chunk of a streamed CSV
_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


def headers(formats: Formats | None) -> list[str]:
    """Field names for machines; for people, the headers in their language (times in the site's zone)."""
    if formats is None:
        return list(EXPORT_FIELDS)
    gettext = translations(formats.lang).gettext
    return [f"{gettext(label)} ({formats.timezone})" if kind == "time" else gettext(label)
            for label, kind in COLUMNS.values()]  # fmt: skip


def csv_chunks(rows: Iterable[Sequence[Any]], formats: Formats | None = None) -> Iterator[bytes]:
    """A CSV file, a few hundred rows per chunk (for a streamed response). For people in French: ';' between
    fields, decimal commas, and a byte-order mark so that Excel reads it as UTF-8."""
    french = formats is not None and formats.lang == "fr"
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if french else ",", lineterminator="\r\n")
    writer.writerow(headers(formats))
    prefix = "\ufeff" if formats is not None else ""
    kinds = [kind for _, kind in COLUMNS.values()]
    for n, row in enumerate(rows, 1):
        writer.writerow(row if formats is None else [_for_people(v, k, formats, french) for v, k in zip(row, kinds)])
        if n % CSV_BATCH == 0:
            yield (prefix + out.getvalue()).encode()
            prefix = ""
            out.seek(0)
            out.truncate()
    yield (prefix + out.getvalue()).encode()


def _for_people(value: Any, kind: str, formats: Formats, decimal_comma: bool) -> Any:
    if value is None:
        return ""
    if kind == "time":
        when = parse_ts(value)
        return when.astimezone(formats.tz).strftime("%Y-%m-%d %H:%M:%S") if when else value
    if kind == "float" and decimal_comma:
        return repr(float(value)).removesuffix(".0").replace(".", ",")
    if kind == "float":
        return repr(float(value)).removesuffix(".0")
    return value


def write_xlsx(rows: Iterable[Sequence[Any]], path: Path, formats: Formats, tmpdir: Path) -> int:
    """An Excel workbook of typed cells (times as dates in the site's zone, numbers as numbers), written row by
    row in constant memory (XlsxWriter spools each row to ``tmpdir``); returns how many rows it holds."""
    gettext = translations(formats.lang).gettext
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "tmpdir": str(tmpdir)})
    sheet = book.add_worksheet(gettext("Sessions"))
    bold, when = book.add_format({"bold": True}), book.add_format({"num_format": _TIME_FORMAT})
    kinds = [kind for _, kind in COLUMNS.values()]
    for c, kind in enumerate(kinds):
        sheet.set_column(c, c, 20 if kind == "time" else 14)
    sheet.write_row(0, 0, headers(formats), bold)
    sheet.freeze_panes(1, 0)
    written = 0
    for written, row in enumerate(rows, 1):
        if written > XLSX_MAX_ROWS:
            written -= 1
            break
        for c, (value, kind) in enumerate(zip(row, kinds)):
            if value is None:
                continue
            if kind == "time":
                moment = parse_ts(value)
                if moment is not None:
                    sheet.write_datetime(written, c, _local(moment, formats), when)
            elif kind in ("int", "float"):
                sheet.write_number(written, c, value)
            else:
                sheet.write_string(written, c, str(value))
    book.close()
    return written


def _local(moment: datetime, formats: Formats) -> datetime:
    """Excel has no time zones: the site's wall-clock time, as people there read it."""
    return moment.astimezone(formats.tz).replace(tzinfo=None)
