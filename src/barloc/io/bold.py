"""BOLD Systems TSV exports: v4 public-portal ("combined") and v5 BCDM layouts."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from barloc.errors import InputError
from barloc.io.fasta import iter_lines
from barloc.io.sequences import clean_sequence
from barloc.io.tabular import parse_float

log = logging.getLogger(__name__)

# Output column -> source column(s) per export version. Several sources are joined with
# "; " (site) or " | " (notes); a missing optional column reads as empty.
_V4 = {
    "id": ("processid",),
    "marker": ("markercode",),
    "sequence": ("nucleotides",),
    "species": ("species_name",),
    "bin_uri": ("bin_uri",),
    "coord_source": ("coord_source",),
    "country": ("country",),
    "province": ("province_state",),
    "region": ("region",),
    "site": ("exactsite", "sector"),
    "notes": (
        "notes",
        "habitat",
        "sampling_protocol",
        "collection_note",
        "extrainfo",
        "tissue_type",
    ),
}
_V5 = {
    "id": ("processid",),
    "marker": ("marker_code",),
    "sequence": ("nuc",),
    "species": ("species",),
    "bin_uri": ("bin_uri",),
    "coord_source": ("coord_source",),
    "country": ("country/ocean",),
    "province": ("province/state",),
    "region": ("region",),
    "site": ("site", "sector"),
    "notes": (
        "notes",
        "short_note",
        "habitat",
        "sampling_protocol",
        "collection_notes",
        "tissue_type",
    ),
}
_REQUIRED = {4: ("processid", "markercode", "nucleotides"), 5: ("processid", "marker_code", "nuc")}
_COLUMNS = [
    "id",
    "sequence",
    "label",
    "group",
    "marker",
    "species",
    "bin_uri",
    "lat",
    "lon",
    "coord_source",
    "country",
    "province",
    "region",
    "site",
    "notes",
    "bold_version",
]
_PROJECT = re.compile(r"^[^0-9]*")


def _version(path: str | Path, header: list[str], line: int) -> int:
    names = set(header)
    for version, required in _REQUIRED.items():
        if all(c in names for c in required):
            return version
    lacks = "; ".join(f"v{v} needs {', '.join(c for c in req if c not in names)}" for v, req in _REQUIRED.items())
    raise InputError(path, f"not a BOLD v4 or v5 (BCDM) export: header lacks columns ({lacks})", line=line)


def _coord(text: str) -> tuple[float, float]:
    """Parse a BCDM coord such as "[12.5, -45.25]"; NaNs when empty or malformed."""
    parts = text.strip().strip("[]()").split(",")
    if len(parts) != 2:
        return math.nan, math.nan
    return parse_float(parts[0].strip()), parse_float(parts[1].strip())


def _checked_latlon(lat: float, lon: float) -> tuple[float, float]:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return math.nan, math.nan
    return lat, lon


def _project(processid: str) -> str:
    # BOLD project codes are the letters before the running number ("ANGBF41820-19" -> ANGBF).
    return _PROJECT.match(processid).group(0) or processid


def read_bold(path: str | Path, markers: Sequence[str] | None = ("COI-5P",)) -> pd.DataFrame:
    """Read a BOLD v4 or v5 (BCDM) TSV export into a record table.

    `markers=None` keeps every marker, otherwise rows with another marker are dropped.
    Records with no sequence are dropped. Fields are tab-separated with no quoting.
    """
    if isinstance(markers, str):
        markers = markers.split(",")
    keep = None if markers is None else {m.strip().upper() for m in markers if m.strip()}
    lines = iter_lines(path, "BOLD TSV")
    header_line, header = next(((n, t) for n, t in lines if t.strip()), (0, ""))
    if not header:
        raise InputError(path, "file is empty")
    columns = [c.strip() for c in header.split("\t")]
    version = _version(path, columns, header_line)
    spec = _V4 if version == 4 else _V5
    index = {name: i for i, name in enumerate(columns)}

    picks = {key: [index[c] for c in names if c in index] for key, names in spec.items()}

    def joined(fields: list[str], key: str, sep: str = "; ") -> str:
        return sep.join(v for v in (fields[i].strip() for i in picks[key]) if v)

    lat_i, lon_i = index.get("lat"), index.get("lon")
    coord_i = index.get("coord")
    rows: dict[str, list] = {c: [] for c in _COLUMNS}
    first_line: dict[str, tuple[int, str]] = {}
    n_total = n_other_marker = n_empty = 0
    for number, text in lines:
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != len(columns):
            raise InputError(
                path,
                f"row has {len(fields)} tab-separated fields but the header has {len(columns)}",
                line=number,
            )
        n_total += 1
        pid = joined(fields, "id")
        if not pid:
            raise InputError(path, "row has an empty processid", line=number)
        marker = joined(fields, "marker")
        if keep is not None and marker.upper() not in keep:
            n_other_marker += 1
            continue
        raw = joined(fields, "sequence")
        if not raw.replace("-", "").replace(".", "").strip():
            n_empty += 1
            continue
        try:
            seq = clean_sequence(raw, "dna", path, pid)
        except InputError as exc:
            raise InputError(path, exc.problem, record=pid, line=number) from None
        if pid in first_line:
            prev_line, prev_marker = first_line[pid]
            hint = (
                f"; it has markers {prev_marker} and {marker}, keep one with --markers" if prev_marker != marker else ""
            )
            raise InputError(
                path,
                f"duplicate processid {pid!r} (first on line {prev_line}, again on line {number}){hint}",
                record=pid,
                line=number,
            )
        first_line[pid] = (number, marker)

        if coord_i is not None:
            lat, lon = _coord(fields[coord_i])
        else:
            lat = parse_float(fields[lat_i].strip()) if lat_i is not None else math.nan
            lon = parse_float(fields[lon_i].strip()) if lon_i is not None else math.nan
        lat, lon = _checked_latlon(lat, lon)
        region, site = joined(fields, "region"), joined(fields, "site")
        rows["id"].append(pid)
        rows["sequence"].append(seq)
        rows["label"].append(None)
        rows["group"].append(_project(pid))
        rows["marker"].append(marker)
        rows["lat"].append(lat)
        rows["lon"].append(lon)
        for key in ("species", "bin_uri", "coord_source", "country", "province"):
            rows[key].append(joined(fields, key))
        rows["region"].append(region)
        rows["site"].append(site)
        # Everything free-text in one place, so later steps can spot market/restaurant samples.
        rows["notes"].append(" | ".join(v for v in (joined(fields, "notes", " | "), region, site) if v))
        rows["bold_version"].append(version)

    if n_other_marker:
        log.info(
            "%s: dropped %d of %d records with a marker other than %s",
            path,
            n_other_marker,
            n_total,
            ", ".join(sorted(keep or ())),
        )
    if n_empty:
        log.warning("%s: dropped %d records with an empty sequence", path, n_empty)
    if not rows["id"]:
        wanted = "" if keep is None else f" with marker {', '.join(sorted(keep))}"
        raise InputError(path, f"no records{wanted} with a sequence ({n_total} rows read)")
    log.info("%s: kept %d BOLD v%d records", path, len(rows["id"]), version)

    df = pd.DataFrame({c: rows[c] for c in _COLUMNS})
    df["label"] = pd.Series([None] * len(df), dtype=object)
    df["lat"] = df["lat"].astype(float)
    df["lon"] = df["lon"].astype(float)
    df["bold_version"] = df["bold_version"].astype(int)
    return df
