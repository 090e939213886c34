"""BOLD collection geography -> ocean-basin label, the target of the fish-origin task.

Three kinds of evidence, most trusted first:

1. field coordinates (``lat``/``lon``), placed with simplified IHO "Limits of Oceans and
   Seas" boundaries drawn as a few polygons (see :func:`basin_from_coordinates`);
2. an origin stated in the free text: an ocean or sea name, an FAO major fishing area
   ("FAO 27"), or "Origin: <country>";
3. the BOLD country/province, looked up in ``resources/geo/country_basin.tsv``.

A market, restaurant or inland sample tells where a fish was sold, not where it was
caught, so for those only a stated origin (or coordinates outside an inland place)
counts and the rest are left unlabelled.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from barloc.errors import InputError

log = logging.getLogger(__name__)

LEVELS = ("basin", "subbasin")
BASINS = ("Atlantic", "Pacific", "Indian", "Mediterranean")
SUBBASINS = (
    "North Atlantic",
    "South Atlantic",
    "Mediterranean",
    "Indian",
    "North Pacific",
    "South Pacific",
)
RULES = ("coordinates", "stated_origin", "province", "country", "market", "unknown")
TABLE_COLUMNS = ("country", "province", "basin", "subbasin", "note")
# Table notes that start like this mark rows with a special meaning (resources/geo/README.md).
INLAND_NOTES = ("inland", "landlocked")
SEA_NOTE = "ocean or sea name"

_SUBBASIN_OF = {
    "Atlantic": ("North Atlantic", "South Atlantic"),
    "Pacific": ("North Pacific", "South Pacific"),
    "Indian": ("Indian", "Indian"),
    "Mediterranean": ("Mediterranean", "Mediterranean"),
}
_BASIN_OF_SUBBASIN = {s: b for b, pair in _SUBBASIN_OF.items() for s in pair}

# ---------------------------------------------------------------------------------------
# Coordinates. Polygons are (lon, lat) vertex lists, tested with even-odd ray casting.
# They approximate the IHO limits to within tens of km at the coasts that matter for
# tuna; points on land get the basin of their side unless they fall in a large interior.

# Mediterranean incl. Alboran Sea (IHO limit Cape Trafalgar-Cape Spartel, ~6W), Marmara,
# Black Sea and Azov. The Spanish/French edge runs east of 2E north of 42.5N so the Bay of
# Biscay stays Atlantic; the south edge stops at 30N so the Gulf of Suez stays Indian.
_MEDITERRANEAN = [
    (-6.0, 35.0),
    (-6.0, 37.3),
    (-1.0, 38.5),
    (-0.7, 40.0),
    (0.3, 41.0),
    (2.0, 42.5),
    (3.0, 43.6),
    (4.5, 44.2),
    (7.0, 44.3),
    (9.5, 44.6),
    (12.0, 46.0),
    (28.5, 46.0),
    (30.0, 46.8),
    (33.0, 47.0),
    (39.0, 47.5),
    (40.0, 46.5),
    (42.0, 43.3),
    (42.0, 41.0),
    (37.5, 38.0),
    (36.5, 36.0),
    (36.3, 34.5),
    (35.3, 31.5),
    (34.3, 30.0),
    (9.0, 30.0),
    (9.0, 34.0),
    (-2.0, 34.5),
]

# Pacific side of the Americas: the divide runs down the Rockies and Sierra Madre, along
# the Central American cordillera (Caribbean coasts of Honduras, Nicaragua, Costa Rica
# and Panama stay Atlantic), through the Panama Canal, down the Andes, and from Cape Horn
# south along its meridian (67.27W), the IHO Atlantic/Pacific limit.
_AMERICAS_PACIFIC = [
    (-105.0, 66.0),
    (-105.0, 24.0),
    (-102.0, 21.0),
    (-100.0, 19.0),
    (-95.5, 17.0),
    (-94.5, 16.8),
    (-93.0, 16.2),
    (-92.0, 15.2),
    (-90.5, 14.8),
    (-89.3, 14.5),
    (-88.3, 14.4),
    (-87.2, 13.9),
    (-86.6, 13.0),
    (-86.2, 12.0),
    (-85.7, 11.3),
    (-85.3, 11.0),
    (-84.5, 10.3),
    (-83.6, 9.6),
    (-82.9, 9.1),
    (-82.6, 8.85),
    (-82.0, 8.6),
    (-81.2, 8.5),
    (-80.5, 8.7),
    (-79.75, 9.15),
    (-79.2, 9.25),
    (-78.6, 9.1),
    (-77.9, 8.5),
    (-77.4, 7.9),
    (-77.2, 7.0),
    (-77.05, 5.5),
    (-76.3, 4.0),
    (-77.5, 1.5),
    (-78.5, -1.0),
    (-79.3, -5.0),
    (-78.0, -9.0),
    (-76.2, -12.0),
    (-73.0, -15.5),
    (-69.0, -18.0),
    (-68.5, -22.0),
    (-69.8, -30.0),
    (-70.0, -33.0),
    (-71.5, -40.0),
    (-72.0, -46.0),
    (-73.0, -50.0),
    (-71.5, -52.5),
    (-68.6, -54.9),
    (-67.27, -56.0),
    (-67.27, -90.5),
    (-180.5, -90.5),
    (-180.5, 66.0),
]

# Pacific side of the Indian/Pacific divide, used south of 30.6N and east of 20E. The
# divide follows the Kra isthmus and the Malay peninsula (Strait of Malacca Indian, Gulf of
# Thailand and the Singapore Strait Pacific), the spine of Sumatra, the Sunda Strait, then
# the islands Java-Bali-Lombok-Sumbawa-Sumba-Timor (their south coasts face the Indian
# Ocean; Java, Flores, Savu and Banda Seas are Pacific), Timor Sea/Arafura Sea limit
# (Tanimbar - Cape Don), across Australia to Bass Strait, and south along South East
# Cape's meridian (146.9E).
_INDO_PACIFIC = [
    (99.0, 30.6),
    (99.0, 9.5),
    (99.1, 9.5),
    (99.1, 8.0),
    (100.0, 8.0),
    (100.0, 7.0),
    (100.8, 7.0),
    (100.8, 6.3),
    (101.5, 6.3),
    (101.5, 4.5),
    (102.3, 4.5),
    (102.3, 3.0),
    (103.3, 3.0),
    (103.3, 1.5),
    (103.55, 1.5),
    (103.55, 1.0),
    (103.0, 1.0),
    (101.0, 0.0),
    (102.8, -3.0),
    (105.8, -5.9),
    (106.6, -6.6),
    (109.0, -7.4),
    (112.0, -7.9),
    (114.4, -8.2),
    (115.7, -8.45),
    (116.7, -8.45),
    (119.2, -8.6),
    (119.3, -9.7),
    (121.0, -10.0),
    (122.0, -10.6),
    (123.4, -10.5),
    (125.0, -9.4),
    (127.3, -8.4),
    (130.8, -8.3),
    (131.8, -11.3),
    (146.9, -39.0),
    (146.9, -90.5),
    (180.5, -90.5),
    (180.5, 30.6),
]

# Continental interiors far from any sea: coordinates there locate a lab or a shop.
_NORTH_AMERICA_INTERIOR = [
    (-101.0, 19.3),
    (-103.5, 19.8),
    (-104.4, 21.2),
    (-105.3, 23.3),
    (-107.0, 25.5),
    (-108.7, 27.5),
    (-110.5, 29.5),
    (-112.5, 31.6),
    (-114.0, 32.3),
    (-116.5, 32.3),
    (-116.5, 34.5),
    (-118.5, 34.5),
    (-118.5, 36.0),
    (-120.5, 36.0),
    (-120.5, 49.0),
    (-121.5, 49.0),
    (-121.5, 60.0),
    (-96.0, 60.0),
    (-96.0, 55.5),
    (-90.0, 54.5),
    (-85.0, 54.0),
    (-81.0, 50.9),
    (-72.5, 50.9),
    (-72.5, 45.0),
    (-76.0, 43.0),
    (-77.5, 39.5),
    (-78.5, 36.0),
    (-80.5, 34.0),
    (-82.0, 32.0),
    (-82.5, 31.0),
    (-85.0, 31.0),
    (-88.5, 31.2),
    (-91.0, 31.0),
    (-94.5, 30.6),
    (-96.5, 30.0),
    (-98.3, 28.0),
    (-99.0, 26.5),
    (-98.6, 24.0),
    (-98.6, 22.0),
    (-98.2, 20.5),
    (-97.5, 19.3),
]
_SOUTH_AMERICA_INTERIOR = [
    (-68.0, -29.0),
    (-68.0, -14.0),
    (-75.0, -14.0),
    (-75.0, -1.0),
    (-50.0, -1.0),
    (-50.0, -29.0),
]
# (lat_min, lat_max, lon_min, lon_max)
_INTERIOR_BOXES = (
    (60.0, 66.0, -141.0, -96.0),  # Yukon, Northwest Territories
    (44.5, 53.3, 7.5, 45.0),  # Alps, central and eastern Europe (after the Mediterranean)
    (44.3, 49.3, 0.5, 7.5),  # interior France
    (-12.0, 28.0, 14.0, 33.0),  # Sahara to the Congo basin
    (15.0, 28.0, -12.0, 14.0),  # western Sahara
    (7.5, 15.0, -10.0, 14.0),  # Sahel
    (-25.0, -12.0, 15.0, 32.0),  # southern Africa
    (-31.0, -25.0, 17.5, 30.0),  # Karoo, Highveld
    (-31.0, -21.5, 116.0, 148.0),  # central Australia
    (-21.5, -18.0, 124.0, 139.0),  # northern Australia
    (48.0, 66.0, 117.0, 135.0),  # eastern Siberia
    (43.0, 48.0, 117.0, 130.0),  # Manchuria
    (-20.0, -8.0, -50.0, -42.0),  # Brazilian highlands
)


def _inside(lon: np.ndarray, lat: np.ndarray, polygon: Sequence[tuple[float, float]]) -> np.ndarray:
    """Even-odd ray casting, vectorised over points."""
    inside = np.zeros(lon.shape, dtype=bool)
    xj, yj = polygon[-1]
    for xi, yi in polygon:
        crosses = (yi > lat) != (yj > lat)
        if yi != yj:
            x_cross = xi + (lat - yi) * (xj - xi) / (yj - yi)
            inside ^= crosses & (lon < x_cross)
        xj, yj = xi, yi
    return inside


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise InputError(None, f"basin level must be one of {', '.join(LEVELS)}, not {level!r}")


def basin_from_coordinates(lat: np.ndarray, lon: np.ndarray, level: str = "basin") -> np.ndarray:
    """Ocean basin (or subbasin) of each point; None where it cannot tell.

    None for invalid or missing coordinates, for large continental interiors, the Caspian,
    Middle East and central Asia, and for the Arctic outside the Atlantic sector. The
    Arctic north of 66N between 100W and 60E (Baffin Bay, Greenland, Norwegian and Barents
    Seas) counts as Atlantic, whose water fills it. South of 60S the three oceans split
    at 67.27W, 20E and 146.9E. Subbasins split the Atlantic and Pacific at the equator.
    """
    _check_level(level)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lat.shape != lon.shape:
        raise ValueError(f"lat and lon differ in shape: {lat.shape} vs {lon.shape}")
    out = np.full(lat.shape, None, dtype=object)
    valid = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    done = ~valid
    safe_lat, safe_lon = np.where(valid, lat, 0.0), np.where(valid, lon, 0.0)

    def put(mask: np.ndarray, label: str | None) -> None:
        nonlocal done
        pick = mask & ~done
        out[pick] = label
        done |= pick

    arctic = safe_lat > 66.0
    put(arctic & (safe_lon > -100.0) & (safe_lon < 60.0), "Atlantic")
    put(arctic, None)
    put(_inside(safe_lon, safe_lat, _MEDITERRANEAN), "Mediterranean")
    interior = _inside(safe_lon, safe_lat, _NORTH_AMERICA_INTERIOR) | _inside(
        safe_lon, safe_lat, _SOUTH_AMERICA_INTERIOR
    )
    for lat0, lat1, lon0, lon1 in _INTERIOR_BOXES:
        interior |= (safe_lat >= lat0) & (safe_lat <= lat1) & (safe_lon >= lon0) & (safe_lon <= lon1)
    put(interior, None)
    put(_inside(safe_lon, safe_lat, _AMERICAS_PACIFIC), "Pacific")
    # West of 20E and east of the Americas divide: Atlantic (Cape Agulhas is at 20E).
    put(safe_lon < 20.0, "Atlantic")
    north = safe_lat >= 30.6
    # Baltic (Gulf of Riga and Gulf of Finland reach 24-31E) is an Atlantic marginal sea.
    baltic = ((safe_lat >= 53.3) & (safe_lon < 24.0)) | ((safe_lat >= 56.0) & (safe_lon < 31.0))
    put(north & baltic, "Atlantic")
    put(north & (safe_lon >= 117.0), "Pacific")
    put(north, None)  # Caspian, Middle East, Russia, central Asia, Tibet
    put(_inside(safe_lon, safe_lat, _INDO_PACIFIC), "Pacific")
    put(np.ones(lat.shape, dtype=bool), "Indian")

    if level == "subbasin":
        north_half = safe_lat >= 0.0
        for basin, (north_name, south_name) in _SUBBASIN_OF.items():
            is_basin = out == basin
            out[is_basin & north_half] = north_name
            out[is_basin & ~north_half] = south_name
    return out


# ---------------------------------------------------------------------------------------
# The lookup table.


def _norm(text: object) -> str:
    """Case-, accent- and whitespace-insensitive key ("Québec " -> "quebec")."""
    if not isinstance(text, str):
        return ""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\u2019", "'").replace("`", "'")
    return " ".join(text.lower().split())


def _default_table_path() -> Path:
    # Only a source checkout has resources/ next to src/; an installed package does not.
    return Path(__file__).resolve().parents[2] / "resources" / "geo" / "country_basin.tsv"


def load_basin_table(path: str | Path | None = None) -> pd.DataFrame:
    """Read and check the country/province -> basin table (all columns str, "" when empty)."""
    if path is None:
        path = _default_table_path()
        if not path.is_file():
            raise InputError(
                None,
                "no basin table given: set geo_table in the config to resources/geo/country_basin.tsv",
            )
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "basin table not found")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8", quoting=3)
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, f"basin table lacks columns {', '.join(missing)}")
    table = table[list(TABLE_COLUMNS)].apply(lambda col: col.str.strip())
    for i, row in enumerate(table.itertuples(index=False), start=2):
        if not row.country:
            raise InputError(path, "empty country", line=i)
        if row.basin not in BASINS + ("",):
            raise InputError(path, f"basin {row.basin!r} is not one of {', '.join(BASINS)}", line=i)
        if row.subbasin and _BASIN_OF_SUBBASIN.get(row.subbasin) != row.basin:
            raise InputError(path, f"subbasin {row.subbasin!r} does not fit basin {row.basin!r}", line=i)
    keys = table["country"].map(_norm) + "\t" + table["province"].map(_norm)
    dup = keys[keys.duplicated()]
    if len(dup):
        raise InputError(path, f"duplicate country/province rows: {', '.join(sorted(set(dup)))[:200]}")
    return table.reset_index(drop=True)


_Row = tuple[str | None, str | None, bool]  # basin, subbasin, inland


def _index(table: pd.DataFrame) -> dict[tuple[str, str], _Row]:
    index = {}
    for row in table.itertuples(index=False):
        inland = _norm(row.note).startswith(INLAND_NOTES)
        key = (_norm(row.country), _norm(row.province))
        index[key] = (row.basin or None, row.subbasin or None, inland)
    return index


def _lookup(index: dict, country: str, province: str) -> tuple[str, _Row] | None:
    """(rule, row) for the province row if there is one, else the country row, else None."""
    c, p = _norm(country), _norm(province)
    if not c:
        return None
    if p and (c, p) in index:
        return "province", index[(c, p)]
    if (c, "") in index:
        return "country", index[(c, "")]
    return None


def _pick(row: _Row, level: str) -> str | None:
    return row[0] if level == "basin" else row[1]


def basin_from_place(country: str, province: str, table: pd.DataFrame, level: str = "basin") -> str | None:
    """Basin of a BOLD country/province; a province row beats the country row.

    None when the place is not in the table, is ambiguous (two coasts, no usable
    province), inland or landlocked.
    """
    _check_level(level)
    found = _lookup(_index(table), country, province)
    if found is None or found[1][2]:
        return None
    return _pick(found[1], level)


# ---------------------------------------------------------------------------------------
# Free text: market samples and stated origins.

_MARKET = re.compile(
    r"(?<![\w-])(?:(?:super|hyper)?markets?|fish\s*markets?|restaurants?|sushi|sashimi|fishmongers?"
    r"|poissonneries?|grocer(?:y|ies|s)?|retail(?:ers?)?|stores?|shops?|canned|tinned"
    r"|food(?!\s+(?:and\s+agriculture|webs?|chains?))|purchased|bought|sold"
    r"|ready[\s-]*(?:made\s+)?(?:dish|meal)e?s?|takeaway|mercado|mercato)(?![\w-])"
)


def is_market_sample(text: str | None) -> bool:
    """True when notes/site/region read like a market, shop or restaurant sample."""
    return bool(_MARKET.search(_norm(text)))


# FAO major fishing areas for statistical purposes; areas that straddle the equator
# (34, 41, 71, 77, 87) have no subbasin.
FAO_AREAS: dict[int, tuple[str | None, str | None]] = {
    18: (None, None),
    21: ("Atlantic", "North Atlantic"),
    27: ("Atlantic", "North Atlantic"),
    31: ("Atlantic", "North Atlantic"),
    34: ("Atlantic", None),
    37: ("Mediterranean", "Mediterranean"),
    41: ("Atlantic", None),
    47: ("Atlantic", "South Atlantic"),
    48: ("Atlantic", "South Atlantic"),
    51: ("Indian", "Indian"),
    57: ("Indian", "Indian"),
    58: ("Indian", "Indian"),
    61: ("Pacific", "North Pacific"),
    67: ("Pacific", "North Pacific"),
    71: ("Pacific", None),
    77: ("Pacific", None),
    81: ("Pacific", "South Pacific"),
    87: ("Pacific", None),
    88: ("Pacific", "South Pacific"),
}
# "FAO 27", "FAO-31", "FAO37-2.2", "FAO major fishing area 51"; "FOA" is a common typo.
_FAO = re.compile(r"(?<![a-z])f(?:ao|oa)[\s_-]*(?:major\s+)?(?:fishing\s+)?(?:area|zone)?[\s_-]*(\d{2})(?!\d)")
_ORIGIN = re.compile(
    r"(?<![a-z])(?:origin|origine|origen|provenance|provenienza|herkunft|caught\s+in|catch\s+area"
    r"|fishing\s+area|zone\s+de\s+peche|zona\s+de\s+pesca)(?![a-z])"
    r"\s*[:=-]?\s*(?:the\s+)?([a-z][a-z '().-]*?)\s*(?=[|;,.(]|$)"
)
# An ocean name followed by one of these is a species or an institution, not an origin
# ("Atlantic bluefin tuna", "Pacific Regional Laboratory").
_NOT_ORIGIN = re.compile(
    r"\s*(?:(?:northern|southern|western|eastern)\s+)?(?:blue\s*fins?|bonitos?|mackerels?|salmon|cod"
    r"|herring|halibut|sailfish|marlins?|saury|sardines?|menhaden|croakers?|little\s+tunny|tunny"
    r"|pomfrets?|spanish|horse|wolffish|redfish|tomcod|skates?|sturgeons?|regional|laborator|universit"
    r"|institut|biological|commission|museum|college|rim(?![a-z]))"
)


def _origin_reader(table: pd.DataFrame) -> Callable[[str], tuple[str | None, str | None]]:
    """A function text -> (basin, subbasin) stated in it, (None, None) when none or conflicting."""
    places = {
        _norm(r.country): (r.basin or None, r.subbasin or None) for r in table.itertuples(index=False) if not r.province
    }
    seas = sorted(
        (
            _norm(r.country)
            for r in table.itertuples(index=False)
            if not r.province and r.basin and _norm(r.note).startswith(SEA_NOTE)
        ),
        key=len,
        reverse=True,  # longest first: "North Atlantic Ocean" before "Atlantic"
    )
    alternatives = "|".join(re.escape(s).replace(r"\ ", r"\s+") for s in seas)
    sea_re = re.compile(r"(?<![\w-])(" + alternatives + r")(?![\w-])") if seas else None

    def read(text: str) -> tuple[str | None, str | None]:
        text = _norm(text)
        if not text:
            return None, None
        said: list[tuple[str | None, str | None]] = []
        if sea_re is not None:
            for m in sea_re.finditer(text):
                if not _NOT_ORIGIN.match(text, m.end()):
                    said.append(places[" ".join(m.group(1).split())])
        for m in _ORIGIN.finditer(text):
            name = m.group(1).strip(" .-")
            for key in (name, re.sub(r"\s+islands?$", "", name), re.sub(r"^islands?\s+of\s+", "", name)):
                if key in places:
                    said.append(places[key])
                    break
        for m in _FAO.finditer(text):
            area = FAO_AREAS.get(int(m.group(1)))
            if area is not None:
                said.append(area)
        basins = {b for b, _ in said if b}
        if len(basins) != 1:
            return None, None
        (basin,) = basins
        subs = {s for b, s in said if b == basin and s}
        return basin, (subs.pop() if len(subs) == 1 else None)

    return read


def stated_origin(text: str, table: pd.DataFrame, level: str = "basin") -> str | None:
    """The basin an ocean/sea name, FAO area or "Origin: <place>" in `text` points to."""
    _check_level(level)
    basin, sub = _origin_reader(table)(text)
    return basin if level == "basin" else sub


# ---------------------------------------------------------------------------------------
# Records.


def _text_column(df: pd.DataFrame, name: str) -> list[str]:
    if name not in df.columns:
        return [""] * len(df)
    return [v if isinstance(v, str) else "" for v in df[name].tolist()]


def _float_column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def assign_basins(df: pd.DataFrame, table: pd.DataFrame, level: str = "basin") -> pd.DataFrame:
    """Label each BOLD record with its basin and the rule that decided it.

    Returns a frame indexed like `df` with ``basin`` (str or None) and ``basin_rule``
    (one of RULES); ``result.attrs["rule_counts"]`` holds the count per rule.

    Order, for an ordinary record: real coordinates, then a stated origin, then the
    province row, then the country row. Coordinates from a country or province centroid
    and (0, 0) placeholders are not real coordinates. For a market/restaurant sample, or a
    record from a place the table marks inland or landlocked: a stated origin, then real
    coordinates unless the place is inland (they locate the shop); otherwise rule
    "market". At subbasin level a less trusted source may fill in the subbasin only when
    it agrees with the basin of a more trusted one.
    """
    _check_level(level)
    n = len(df)
    lat, lon = _float_column(df, "lat"), _float_column(df, "lon")
    coord_source = _text_column(df, "coord_source")
    centroid = np.array(["centroid" in s.lower() for s in coord_source], dtype=bool)
    real = np.isfinite(lat) & np.isfinite(lon) & ~centroid & ~((lat == 0) & (lon == 0))
    coord_basin = basin_from_coordinates(lat, lon, "basin")
    coord_sub = basin_from_coordinates(lat, lon, "subbasin")

    countries, provinces = _text_column(df, "country"), _text_column(df, "province")
    notes, sites = _text_column(df, "notes"), _text_column(df, "site")
    regions = _text_column(df, "region")
    index = _index(table)
    read_origin = _origin_reader(table)

    basins: list[str | None] = []
    rules: list[str] = []
    not_in_table: dict[str, int] = {}
    disagree = 0
    for i in range(n):
        text = " | ".join(t for t in (notes[i], sites[i], regions[i]) if t)
        found = _lookup(index, countries[i], provinces[i])
        if found is None and countries[i].strip():
            not_in_table[countries[i].strip()] = not_in_table.get(countries[i].strip(), 0) + 1
        inland = found is not None and found[1][2]
        market = inland or is_market_sample(text)
        coords = (coord_basin[i], coord_sub[i]) if real[i] else (None, None)
        stated = read_origin(text)
        if market:
            sources = [("stated_origin", stated), ("coordinates", (None, None) if inland else coords)]
        else:
            place = (found[1][0], found[1][1]) if found is not None else (None, None)
            place_rule = found[0] if found is not None else "country"
            sources = [("coordinates", coords), ("stated_origin", stated), (place_rule, place)]
            if coords[0] is not None and place[0] is not None and place[0] != coords[0]:
                disagree += 1
        value, rule = None, "market" if market else "unknown"
        anchor = None
        for name, (b, s) in sources:
            if b is None:
                continue
            if anchor is None:
                anchor = b
            elif b != anchor:
                continue  # contradicts a more trusted source
            pick = b if level == "basin" else s
            if pick is not None:
                value, rule = pick, name
                break
        basins.append(value)
        rules.append(rule)

    out = pd.DataFrame(
        {
            "basin": pd.Series(basins, index=df.index, dtype=object),
            "basin_rule": pd.Series(rules, index=df.index, dtype=object),
        }
    )
    counts = {r: rules.count(r) for r in RULES}
    out.attrs["rule_counts"] = counts
    for r in RULES:
        log.info("basin labels (%s): %d records by rule %s", level, counts[r], r)
    if not_in_table:
        top = sorted(not_in_table.items(), key=lambda kv: -kv[1])[:10]
        log.warning(
            "%d records name a country not in the basin table: %s",
            sum(not_in_table.values()),
            ", ".join(f"{k} ({v})" for k, v in top),
        )
    if disagree:
        log.info(
            "%d records have coordinates in another basin than their country/province; kept the coordinates",
            disagree,
        )
    return out
