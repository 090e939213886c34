"""BOLD geography -> ocean basin: coordinates, the lookup table, notes, and the bundled file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from barloc import geo
from barloc.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
TABLE_PATH = ROOT / "resources" / "geo" / "country_basin.tsv"
BOLD_PATH = ROOT / "resources" / "barcodes" / "tuna_bold_v4.tsv"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return geo.load_basin_table(TABLE_PATH)


# Real ports and fishing grounds on both sides of every boundary the rules draw.
NAMED_PLACES = [
    # Atlantic / Mediterranean at Gibraltar; Bay of Biscay stays Atlantic
    ("Cadiz", 36.53, -6.29, "Atlantic"),
    ("Tarifa", 36.01, -5.60, "Mediterranean"),
    ("Tangier", 35.78, -5.81, "Mediterranean"),
    ("Larache, Morocco", 35.19, -6.16, "Atlantic"),
    ("Almeria (Alboran Sea)", 36.84, -2.46, "Mediterranean"),
    ("San Sebastian (Bay of Biscay)", 43.32, -1.98, "Atlantic"),
    ("Arcachon (Bay of Biscay)", 44.66, -1.17, "Atlantic"),
    ("Barcelona", 41.38, 2.18, "Mediterranean"),
    ("Marseille", 43.30, 5.37, "Mediterranean"),
    ("Venice", 45.44, 12.33, "Mediterranean"),
    ("Strait of Sicily (MLRV station)", 36.424, 15.175, "Mediterranean"),
    ("Piraeus", 37.94, 23.65, "Mediterranean"),
    ("Istanbul (Bosporus)", 41.00, 28.98, "Mediterranean"),
    # Black Sea and Azov grouped with the Mediterranean
    ("Sevastopol (Black Sea)", 44.60, 33.50, "Mediterranean"),
    ("Batumi (Black Sea)", 41.64, 41.64, "Mediterranean"),
    ("Odessa (Black Sea)", 46.48, 30.73, "Mediterranean"),
    ("Taganrog (Sea of Azov)", 47.20, 38.90, "Mediterranean"),
    # Suez: Mediterranean north, Red Sea (Indian) south; Persian Gulf Indian
    ("Port Said", 31.26, 32.30, "Mediterranean"),
    ("Haifa", 32.80, 35.00, "Mediterranean"),
    ("Suez", 29.97, 32.55, "Indian"),
    ("Eilat (Gulf of Aqaba)", 29.55, 34.95, "Indian"),
    ("Jeddah (Red Sea)", 21.50, 39.17, "Indian"),
    ("Dubai (Persian Gulf)", 25.27, 55.30, "Indian"),
    ("Bandar Imam Khomeini (head of the Gulf)", 30.43, 49.08, "Indian"),
    ("Kochi", 9.97, 76.27, "Indian"),
    ("Mombasa", -4.05, 39.67, "Indian"),
    ("Port Louis, Mauritius", -20.16, 57.50, "Indian"),
    # Atlantic / Indian at 20E south of Africa
    ("Cape Town", -33.90, 18.42, "Atlantic"),
    ("Hermanus", -34.42, 19.24, "Atlantic"),
    ("Mossel Bay", -34.18, 22.14, "Indian"),
    ("Park Rynie, KwaZulu-Natal", -30.33, 30.75, "Indian"),
    ("Walvis Bay", -22.95, 14.50, "Atlantic"),
    ("Dakar", 14.69, -17.44, "Atlantic"),
    # Indian / Pacific through the Malay peninsula and the Indonesian archipelago
    ("Phuket (Andaman Sea)", 7.88, 98.40, "Indian"),
    ("Surat Thani (Gulf of Thailand)", 9.14, 99.33, "Pacific"),
    ("Penang (Strait of Malacca)", 5.41, 100.34, "Indian"),
    ("Kota Bharu (South China Sea)", 6.13, 102.25, "Pacific"),
    ("Port Klang (Strait of Malacca)", 3.00, 101.39, "Indian"),
    ("Kuantan (South China Sea)", 3.80, 103.33, "Pacific"),
    ("Banda Aceh", 5.55, 95.32, "Indian"),
    ("Padang (west Sumatra)", -0.95, 100.35, "Indian"),
    ("Palembang (Bangka Strait)", -2.98, 104.75, "Pacific"),
    ("Pelabuhanratu (south Java)", -7.03, 106.53, "Indian"),
    ("Jakarta (Java Sea)", -6.10, 106.80, "Pacific"),
    ("Cilacap (south Java)", -7.73, 109.00, "Indian"),
    ("Surabaya (Java Sea)", -7.20, 112.70, "Pacific"),
    ("Benoa, south Bali", -8.75, 115.21, "Indian"),
    ("Singaraja, north Bali (Bali Sea)", -8.10, 115.09, "Pacific"),
    ("Kupang (Savu Sea)", -10.17, 123.60, "Pacific"),
    ("Dili (Banda Sea side)", -8.55, 125.58, "Pacific"),
    ("Tawau, Sabah", 4.24, 117.90, "Pacific"),
    # Timor Sea / Arafura Sea, and ~147E south of Australia
    ("Darwin (Timor Sea)", -12.46, 130.84, "Indian"),
    ("Gove (Arafura Sea)", -12.18, 136.78, "Pacific"),
    ("Karumba (Gulf of Carpentaria)", -17.49, 140.84, "Pacific"),
    ("Cairns (Coral Sea)", -16.92, 145.78, "Pacific"),
    ("Fremantle", -32.05, 115.74, "Indian"),
    ("Port Lincoln", -34.72, 135.86, "Indian"),
    ("Melbourne (Bass Strait side)", -37.82, 144.95, "Indian"),
    ("Lakes Entrance (Tasman Sea)", -37.88, 147.98, "Pacific"),
    ("East of Maria Island, Tasmania", -42.63, 149.08, "Pacific"),
    ("Sydney", -33.86, 151.20, "Pacific"),
    ("Moorea, French Polynesia", -17.526, -149.938, "Pacific"),
    ("Honolulu", 21.30, -157.86, "Pacific"),
    # Atlantic / Pacific through the Americas
    ("Vancouver", 49.28, -123.10, "Pacific"),
    ("Halifax", 44.65, -63.57, "Atlantic"),
    ("Gulf of California (Puerto Penasco)", 31.30, -113.55, "Pacific"),
    ("Galveston (Gulf of Mexico)", 29.30, -94.80, "Atlantic"),
    ("Mazatlan", 23.20, -106.40, "Pacific"),
    ("Tampico (Gulf of Mexico)", 22.25, -97.85, "Atlantic"),
    ("Salina Cruz (Tehuantepec)", 16.17, -95.20, "Pacific"),
    ("Coatzacoalcos (Tehuantepec)", 18.15, -94.40, "Atlantic"),
    ("Cozumel (Caribbean)", 20.42, -86.80, "Atlantic"),
    ("Honduras Caribbean coast", 15.80, -86.00, "Atlantic"),
    ("El Salvador coast", 13.30, -88.00, "Pacific"),
    ("Corinto, Nicaragua", 12.48, -87.17, "Pacific"),
    ("Bluefields, Nicaragua", 12.00, -83.77, "Atlantic"),
    ("Limon, Costa Rica", 10.00, -83.03, "Atlantic"),
    ("Nicoya, Costa Rica", 10.00, -85.50, "Pacific"),
    ("Golfito, Costa Rica", 8.64, -83.17, "Pacific"),
    ("Bocas del Toro, Panama", 9.34, -82.25, "Atlantic"),
    ("Colon, Panama Canal", 9.36, -79.90, "Atlantic"),
    ("Balboa, Panama Canal", 8.95, -79.57, "Pacific"),
    ("Cartagena, Colombia", 10.40, -75.50, "Atlantic"),
    ("Buenaventura, Colombia", 3.88, -77.07, "Pacific"),
    ("Guayaquil", -2.20, -79.90, "Pacific"),
    ("Callao", -12.05, -77.15, "Pacific"),
    ("Arica, Chile", -18.50, -70.30, "Pacific"),
    ("Recife", -8.05, -34.90, "Atlantic"),
    ("Mar del Plata", -38.00, -57.55, "Atlantic"),
    # Baltic and Arctic
    ("Kiel (Baltic)", 54.32, 10.14, "Atlantic"),
    ("St Petersburg (Gulf of Finland)", 59.94, 30.30, "Atlantic"),
    ("Tromso (Norwegian Sea, north of 66N)", 69.65, 18.96, "Atlantic"),
    # Undecidable
    ("Baku (Caspian)", 40.40, 49.87, None),
    ("Moscow", 55.75, 37.60, None),
    ("Calgary", 51.05, -114.07, None),
    ("Ottawa", 45.42, -75.70, None),
    ("Paris", 48.86, 2.35, None),
    ("N'Djamena", 12.10, 15.05, None),
    ("Barrow (Beaufort Sea)", 71.30, -156.80, None),
    ("latitude out of range", 95.0, 0.0, None),
    ("longitude out of range", 0.0, 200.0, None),
    ("missing", float("nan"), 10.0, None),
]


def test_named_places_get_their_basin():
    lat = np.array([p[1] for p in NAMED_PLACES])
    lon = np.array([p[2] for p in NAMED_PLACES])
    got = geo.basin_from_coordinates(lat, lon)
    assert got.dtype == object and got.shape == lat.shape
    wrong = [(name, want, have) for (name, _, _, want), have in zip(NAMED_PLACES, got) if have != want]
    assert not wrong, wrong


def test_subbasin_splits_atlantic_and_pacific_at_the_equator():
    places = {
        "Recife": (-8.05, -34.90, "South Atlantic"),
        "Dakar": (14.69, -17.44, "North Atlantic"),
        "Moorea": (-17.53, -149.94, "South Pacific"),
        "Honolulu": (21.30, -157.86, "North Pacific"),
        "Tarawa": (1.35, 173.00, "North Pacific"),
        "Kiribati APIPA station": (-1.963, -174.662, "South Pacific"),
        "Mombasa": (-4.05, 39.67, "Indian"),
        "Marseille": (43.30, 5.37, "Mediterranean"),
        "Caspian": (40.40, 49.87, None),
    }
    lat = np.array([v[0] for v in places.values()])
    lon = np.array([v[1] for v in places.values()])
    got = geo.basin_from_coordinates(lat, lon, level="subbasin")
    assert dict(zip(places, got)) == {k: v[2] for k, v in places.items()}
    assert set(got[got != None]) <= set(geo.SUBBASINS)  # noqa: E711


def test_coordinates_reject_an_unknown_level():
    with pytest.raises(InputError):
        geo.basin_from_coordinates(np.array([0.0]), np.array([0.0]), level="ocean")


# ---------------------------------------------------------------------------------------
# Table


TWO_COASTS = (
    "United States",
    "Canada",
    "Mexico",
    "Colombia",
    "Panama",
    "Costa Rica",
    "Nicaragua",
    "Guatemala",
    "Honduras",
    "South Africa",
    "Australia",
    "Indonesia",
    "Malaysia",
    "Spain",
    "France",
    "Morocco",
    "Egypt",
    "Russia",
    "Thailand",
)


def test_table_is_well_formed_and_broad(table):
    assert list(table.columns) == list(geo.TABLE_COLUMNS)
    countries = table.loc[(table.province == "") & ~table.note.str.startswith(geo.SEA_NOTE), "country"]
    assert countries.nunique() >= 150
    per_basin = table.loc[countries.index, "basin"].value_counts()
    for basin in geo.BASINS:
        assert per_basin.get(basin, 0) >= 20, (basin, per_basin.to_dict())
    for country in TWO_COASTS:
        rows = table[table.country == country]
        assert (rows[rows.province == ""].basin == "").all(), country
        assert rows[rows.province != ""].basin.replace("", np.nan).nunique() >= 2, country


@pytest.mark.parametrize(
    "country, province, basin, subbasin",
    [
        ("Mexico", "", None, None),
        ("Mexico", "Quintana Roo", "Atlantic", "North Atlantic"),
        ("Mexico", "Baja California Sur", "Pacific", "North Pacific"),
        ("  mexico ", "QUINTANA   roo", "Atlantic", "North Atlantic"),
        ("Mexico", "Yucatán", "Atlantic", "North Atlantic"),
        ("Mexico", "Ciudad de México", None, None),
        ("United States", "Florida", "Atlantic", "North Atlantic"),
        ("United States", "Hawaii", "Pacific", "North Pacific"),
        ("United States", "Kansas", None, None),
        ("United States", "", None, None),
        ("Canada", "Nova Scotia", "Atlantic", "North Atlantic"),
        ("Canada", "British Columbia", "Pacific", "North Pacific"),
        ("Canada", "Québec", "Atlantic", "North Atlantic"),
        ("Canada", "Alberta", None, None),
        ("Canada", "Ontario", None, None),
        ("Canada", "Manitoba", None, None),
        ("Canada", "Yukon Territory", None, None),  # unknown province: country row, ambiguous
        ("Australia", "Western Australia", "Indian", "Indian"),
        ("Australia", "Queensland", "Pacific", "South Pacific"),
        ("Australia", "Tasmania", None, None),
        ("South Africa", "KwaZulu-Natal", "Indian", "Indian"),
        ("South Africa", "Western Cape", None, None),
        ("Indonesia", "Jawa Barat", None, None),
        ("Indonesia", "Sulawesi Utara", "Pacific", "North Pacific"),
        ("Malaysia", "Sabah", "Pacific", "North Pacific"),
        ("Malaysia", "Penang", "Indian", "Indian"),
        ("Spain", "Galicia", "Atlantic", "North Atlantic"),
        ("Spain", "Cataluña", "Mediterranean", "Mediterranean"),
        ("France", "Île-de-France", None, None),
        ("Egypt", "Red Sea", "Indian", "Indian"),
        ("Egypt", "Alexandria", "Mediterranean", "Mediterranean"),
        ("Russia", "Primorsky Krai", "Pacific", "North Pacific"),
        ("Russia", "", None, None),
        ("Iran", "", "Indian", "Indian"),
        ("Iran", "Gilan", None, None),  # Caspian coast: the province row beats the country row
        ("Brazil", "", "Atlantic", None),
        ("Brazil", "Sao Paulo", "Atlantic", "South Atlantic"),
        ("Italy", "Sicily", "Mediterranean", "Mediterranean"),
        ("Turkey", "", "Mediterranean", "Mediterranean"),
        ("Japan", "", "Pacific", "North Pacific"),
        ("Reunion", "", "Indian", "Indian"),
        ("Kiribati", "", "Pacific", None),
        ("Switzerland", "", None, None),
        ("Unrecoverable", "", None, None),
        ("Atlantis", "", None, None),
        ("", "Florida", None, None),
        ("Atlantic Ocean", "", "Atlantic", None),
        ("North Atlantic Ocean", "", "Atlantic", "North Atlantic"),
        ("Pacific Ocean", "", "Pacific", None),
        ("Indian Ocean", "Mozambique Channel", "Indian", "Indian"),
        ("Mediterranean Sea", "", "Mediterranean", "Mediterranean"),
        ("Black Sea", "", "Mediterranean", "Mediterranean"),
        ("Red Sea", "", "Indian", "Indian"),
        ("Caribbean Sea", "", "Atlantic", "North Atlantic"),
        ("South China Sea", "", "Pacific", None),
        ("Caspian Sea", "", None, None),
    ],
)
def test_basin_from_place(table, country, province, basin, subbasin):
    assert geo.basin_from_place(country, province, table, "basin") == basin
    assert geo.basin_from_place(country, province, table, "subbasin") == subbasin


HEADER = "country\tprovince\tbasin\tsubbasin\tnote\n"


@pytest.mark.parametrize(
    "body, problem",
    [
        (HEADER + "Italy\t\tAdriatic\t\t\n", "basin 'Adriatic'"),
        (HEADER + "Italy\t\tMediterranean\tNorth Pacific\t\n", "does not fit"),
        (HEADER + "Italy\t\tMediterranean\t\t\nITALY \t\tMediterranean\t\t\n", "duplicate"),
        (HEADER + "\tFlorida\tAtlantic\t\t\n", "empty country"),
        ("country\tprovince\tbasin\nItaly\t\tMediterranean\n", "lacks columns"),
    ],
)
def test_load_basin_table_rejects_bad_tables(tmp_path, body, problem):
    path = tmp_path / "t.tsv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(InputError, match=problem):
        geo.load_basin_table(path)


def test_load_basin_table_defaults_to_the_checkout_copy():
    assert len(geo.load_basin_table()) == len(geo.load_basin_table(TABLE_PATH))


# ---------------------------------------------------------------------------------------
# Notes


@pytest.mark.parametrize(
    "text",
    [
        "Restaurant | Sold as thon | muscle | Departement code 75",  # FCSF, Paris
        "Fishmonger filet | Sold as thon rouge",
        "Supermarket fresh filet | Origin: Indian Ocean | sold as thon albacore",
        "ready-made dish | sold as thon albacore",
        # MOBIL, Calgary
        "Animal: Tuna | Food | Collected by Paige, Sept 23 2017, Sushi Ichiban, 4014 Macleod Trail S "
        "Calgary AB. red tuna sushi, $3.15/pc",
        "Fish: bigeye tuna, sashimi-NA | Matthew Morris | Calgary | Kinjo Sushi and Grill",
        "SL=420 mm. | Purchased at market | Muscle | Philippines, Quezon Province, Infanta fish port",
        "Frozen White Sashimi-Grade Tuna | white tuna | Ottawa | T and T Supermarket 224 Hunt Club Road",
        "Product No. 47 | Fish store",
        "canned tuna, brand X",
    ],
)
def test_market_samples_are_recognised(text):
    assert geo.is_market_sample(text)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "Larvae, FAO31 | WGS 84, Size 5.0 mm SL, S10, Flexion",
        "WGS84, Sport Fish, not vouchered",
        "Tawau, Fish landing site",
        "Marine | Trolling fishing | Fishing vessel | Levant Basin",
        "Specimen stored in ethanol; workshop sample",
        "catch reported to the Food and Agriculture Organization, area 27",
        "Cruise Gordon Gunter 1201, Sta. 28",
    ],
)
def test_field_samples_are_not_market_samples(text):
    assert not geo.is_market_sample(text)


@pytest.mark.parametrize(
    "text, basin, subbasin",
    [
        ("Supermarket fresh filet | Origin: Pacific Ocean, FAO 71 | sold as thon", "Pacific", None),
        ("restaurant | Origin: Atlantic Ocean | sold as thon", "Atlantic", None),
        ("Atlantic Ocean, FAO 31", "Atlantic", "North Atlantic"),
        ("Fishmonger filet | Origin: Reunion Island | sold as thon", "Indian", "Indian"),
        ("Fishmonger filet | Origin: Mediterranean Sea", "Mediterranean", "Mediterranean"),
        ("from Tokyo Tsukiji Fish Market | FAO-21", "Atlantic", "North Atlantic"),
        ("FAO37-2.2", "Mediterranean", "Mediterranean"),
        ("muscle | Northern South China Sea", "Pacific", "North Pacific"),
        ("Origine : Océan Indien", "Indian", "Indian"),
        ("Pacific bluefin tuna caught in the Mediterranean Sea", "Mediterranean", "Mediterranean"),
        ("Thunnus thynnus (Atlantic bluefin tuna)", None, None),
        ("Supermarket fresh filet | Origin: Spain | sold as thon albacore", None, None),
        ("Atlantic Ocean | FAO 71", None, None),  # contradicting statements
        ("Asia-Pacific seafood trade", None, None),
        ("FAO-03 | FAO-02", None, None),  # not FAO major areas
        ("FDA Pacific Regional Laboratory Northwest", None, None),
        ("", None, None),
    ],
)
def test_stated_origin(table, text, basin, subbasin):
    assert geo.stated_origin(text, table, "basin") == basin
    assert geo.stated_origin(text, table, "subbasin") == subbasin


# ---------------------------------------------------------------------------------------
# Records

CENTROID = "Coordinates from country centroid"


def _records(rows: list[dict]) -> pd.DataFrame:
    cols = ["id", "lat", "lon", "coord_source", "country", "province", "region", "site", "notes"]
    filled = [{c: r.get(c, np.nan if c in ("lat", "lon") else "") for c in cols} for r in rows]
    df = pd.DataFrame(filled, columns=cols)
    df.index = [f"r{i}" for i in range(len(df))]  # a non-default index must be kept
    return df


PROV_CENTROID = "Coordinates from province centroid"
FRANCE = dict(lat=46.6424, lon=2.4, coord_source=CENTROID, country="France")
# id -> (record, expected (basin, rule) at basin level)
CASES = {
    "field coordinates": (dict(lat=20.416, lon=-86.804, country="Mexico"), ("Atlantic", "coordinates")),
    # BOLD's centroid for Indonesia lies in the Pacific but says nothing about the catch.
    "country centroid ignored": (
        dict(lat=0.15592, lon=113.965, coord_source=CENTROID, country="Indonesia"),
        (None, "unknown"),
    ),
    "same point as field coordinates": (
        dict(lat=0.15592, lon=113.965, country="Indonesia"),
        ("Pacific", "coordinates"),
    ),
    "province centroid ignored": (
        dict(lat=-22.5, lon=144.5, coord_source=PROV_CENTROID, country="Australia", province="Queensland"),
        ("Pacific", "province"),
    ),
    "zero placeholder ignored": (dict(lat=0.0, lon=0.0, country="Italy"), ("Mediterranean", "country")),
    "province row": (dict(country="Canada", province="Nova Scotia"), ("Atlantic", "province")),
    "country row": (dict(country="Italy"), ("Mediterranean", "country")),
    "ocean as country": (dict(country="Atlantic Ocean"), ("Atlantic", "country")),
    "two coasts": (dict(country="United States"), (None, "unknown")),
    "no geography": (dict(), (None, "unknown")),
    "stated beats country": (dict(country="Mexico", notes="Larvae, FAO31"), ("Atlantic", "stated_origin")),
    "coordinates beat stated": (
        dict(lat=36.42, lon=15.18, country="Italy", notes="FAO-27"),
        ("Mediterranean", "coordinates"),
    ),
    "restaurant": (dict(FRANCE, region="Departement code 75", notes="Restaurant | Sold as thon"), (None, "market")),
    "restaurant in Italy not labelled by country": (dict(country="Italy", notes="sushi restaurant"), (None, "market")),
    "market with stated origin": (
        dict(FRANCE, notes="Supermarket fresh filet | Origin: Indian Ocean"),
        ("Indian", "stated_origin"),
    ),
    "market stated origin beats coordinates": (
        dict(lat=35.66, lon=139.77, country="Japan", notes="Tsukiji fish market | FAO-21"),
        ("Atlantic", "stated_origin"),
    ),
    "fish market at a landing port": (
        dict(lat=13.942, lon=121.988, country="Philippines", province="Quezon", notes="Purchased at market"),
        ("Pacific", "coordinates"),
    ),
    "sushi bar coordinates in an inland province": (
        dict(lat=51.0756, lon=-114.13, country="Canada", province="Alberta", site="Umi Sushi Express"),
        (None, "market"),
    ),
    "inland province without market words": (
        dict(country="Canada", province="Manitoba", notes="Voucher-type:tissue"),
        (None, "market"),
    ),
    "landlocked country": (dict(lat=46.9, lon=7.4, country="Switzerland"), (None, "market")),
}


@pytest.mark.parametrize("record, expected", list(CASES.values()), ids=list(CASES))
def test_assign_basins_rules(table, record, expected):
    out = geo.assign_basins(_records([record]), table, "basin")
    assert (out["basin"].iloc[0], out["basin_rule"].iloc[0]) == expected


def test_assign_basins_frame_and_counts(table, caplog):
    df = _records([record for record, _ in CASES.values()])
    with caplog.at_level(logging.INFO, logger="barloc.geo"):
        out = geo.assign_basins(df, table, "basin")
    assert list(out.columns) == ["basin", "basin_rule"]
    assert out.index.equals(df.index)
    assert out["basin"].dtype == object
    assert out["basin"].map(lambda v: v is None or v in geo.BASINS).all()
    assert any(v is None for v in out["basin"])  # None, not NaN
    counts = out.attrs["rule_counts"]
    assert set(counts) == set(geo.RULES) and sum(counts.values()) == len(df)
    assert counts == out["basin_rule"].value_counts().reindex(list(geo.RULES), fill_value=0).to_dict()
    for rule in geo.RULES:
        assert any(f"by rule {rule}" in m for m in caplog.messages), rule


def test_subbasin_level_refines_only_with_agreeing_sources(table):
    df = _records(
        [
            # FAO 71 straddles the equator; Queensland (Pacific) supplies the subbasin.
            dict(country="Australia", province="Queensland", notes="FAO-71"),
            # The notes say Atlantic; Queensland's South Pacific must not fill in the subbasin.
            dict(country="Australia", province="Queensland", notes="Atlantic Ocean"),
            dict(lat=-8.05, lon=-34.9, country="Brazil"),
            dict(country="Brazil"),
            dict(country="Brazil", province="Amapá"),
        ]
    )
    basin = geo.assign_basins(df, table, "basin")
    sub = geo.assign_basins(df, table, "subbasin")
    assert basin["basin"].tolist() == ["Pacific", "Atlantic", "Atlantic", "Atlantic", "Atlantic"]
    assert basin["basin_rule"].tolist() == [
        "stated_origin",
        "stated_origin",
        "coordinates",
        "country",
        "province",
    ]
    assert sub["basin"].tolist() == ["South Pacific", None, "South Atlantic", None, "North Atlantic"]
    assert sub["basin_rule"].tolist() == ["province", "unknown", "coordinates", "unknown", "province"]


def test_assign_basins_tolerates_missing_columns(table):
    df = pd.DataFrame({"country": ["Italy", "Mexico"], "province": ["", "Sonora"]})
    out = geo.assign_basins(df, table)
    assert out["basin"].tolist() == ["Mediterranean", "Pacific"]


# ---------------------------------------------------------------------------------------
# The bundled BOLD export


@pytest.fixture(scope="module")
def bold() -> pd.DataFrame:
    from barloc.io.bold import read_bold

    return read_bold(BOLD_PATH)


def test_every_bundled_country_is_in_the_table(bold, table):
    known = set(table.loc[table.province == "", "country"].map(geo._norm))
    missing = sorted({c for c in bold["country"] if c and geo._norm(c) not in known})
    assert not missing, missing


def test_bundled_file_basin_counts_are_plausible(bold, table):
    basin = geo.assign_basins(bold, table, "basin")
    sub = geo.assign_basins(bold, table, "subbasin")
    per_basin = basin["basin"].value_counts()
    per_sub = sub["basin"].value_counts()
    print("\nbasin:", per_basin.to_dict(), basin.attrs["rule_counts"])
    print("subbasin:", per_sub.to_dict(), sub.attrs["rule_counts"])

    assert set(per_basin.index) <= set(geo.BASINS)
    assert (per_basin >= 30).sum() >= 3
    assert (per_sub >= 30).sum() >= 4
    # Roughly half the export has no usable geography; it must stay unlabelled.
    assert 0.3 < basin["basin"].notna().mean() < 0.8
    assert basin.attrs["rule_counts"]["coordinates"] >= 300
    assert basin.attrs["rule_counts"]["market"] >= 60

    # A subbasin label always lies inside the record's basin label.
    both = sub["basin"].notna()
    assert both.sum() > 0
    assert (sub.loc[both, "basin"].map(geo._BASIN_OF_SUBBASIN) == basin.loc[both, "basin"]).all()

    # Market samples are never labelled from where they were sold.
    market_text = bold["notes"].map(geo.is_market_sample)
    assert market_text.sum() >= 80
    assert not basin.loc[market_text, "basin_rule"].isin(["country", "province"]).any()
    calgary = bold["id"].str.startswith(("MOBIL", "UCFMS"))
    assert calgary.sum() >= 20 and basin.loc[calgary, "basin"].isna().all()
    paris = bold["id"].str.startswith("FCSF")
    no_origin = paris & ~bold["notes"].str.contains("Origin", case=False)
    assert no_origin.sum() >= 30 and basin.loc[no_origin, "basin"].isna().all()
    stated = paris & bold["notes"].str.contains("Origin: Pacific Ocean")
    assert stated.sum() >= 3 and (basin.loc[stated, "basin"] == "Pacific").all()

    # Field coordinates agree with every place that has a single basin.
    coords = basin["basin_rule"] == "coordinates"
    place = [
        geo.basin_from_place(c, p, table) for c, p in zip(bold.loc[coords, "country"], bold.loc[coords, "province"])
    ]
    labels = zip(bold.loc[coords, "id"], basin.loc[coords, "basin"], place)
    clash = [(i, b, p) for i, b, p in labels if p and p != b]
    assert not clash, clash
