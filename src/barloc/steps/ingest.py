"""ingest: reference (+ labels) and query files -> one validated record table."""

from __future__ import annotations

from barloc.records import build_records, write_records


def run(inputs, outputs, params, threads: int = 1) -> None:
    records, meta = build_records(params.cfg, getattr(inputs, "geo_table", None), params.task)
    write_records(records, outputs.records, meta)
