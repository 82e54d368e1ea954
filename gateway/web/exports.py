"""Charging sessions as a download (the API's and the console's): a CSV streamed as it is written, an .xlsx
written in a worker thread into the state directory and sent as a file. One workbook at a time: each is CPU
work for tens of seconds on a Pi, and the chargers come first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.responses import Response

from gateway.export import XLSX_MAX_ROWS, csv_chunks, write_xlsx
from gateway.i18n import Formats
from gateway.store.db import read_rows
from gateway.store.transactions import EXPORT_COLUMNS, Filters
from gateway.web.deps import WebContext

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def transactions_file(ctx: WebContext, filters: Filters, kind: str, formats: Formats | None,
                            sort: str = "started_at", descending: bool = True) -> Response:  # fmt: skip
    """The sessions that pass the filters as ``kind`` (csv or xlsx); formats None: a CSV for machines."""
    sql, params = filters.select(EXPORT_COLUMNS, sort, descending)
    db = ctx.store.db.path
    if kind == "csv":
        return StreamingResponse(csv_chunks(read_rows(db, sql, params), formats), media_type="text/csv; charset=utf-8",
                                 headers=_attachment("transactions.csv"))  # fmt: skip
    folder = db.parent / "exports"
    folder.mkdir(exist_ok=True)
    handle, name = tempfile.mkstemp(suffix=".xlsx", dir=folder)
    os.close(handle)
    path = Path(name)
    try:
        async with ctx.workbooks:
            rows = read_rows(db, f"{sql} LIMIT {XLSX_MAX_ROWS}", params)
            await asyncio.to_thread(write_xlsx, rows, path, formats or Formats(), folder)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(path, media_type=XLSX, headers=_attachment("transactions.xlsx"),
                        background=BackgroundTask(_remove, path))  # fmt: skip


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
