"""docs/configuration.md is the config schema rendered by barloc.configref, and stays so."""

from __future__ import annotations

from pathlib import Path

from barloc import configref

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / configref.PAGE

SMALL = {
    "description": "a toy config",
    "type": "object",
    "additionalProperties": False,
    "required": ["seed", "jobs"],
    "properties": {
        "seed": {"type": "integer", "minimum": 0, "description": "random seed"},
        "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast", "description": "speed | care"},
        "ratio": {
            "oneOf": [{"type": "string", "enum": ["auto"]}, {"type": "number", "minimum": 0, "maximum": 1}],
            "default": "auto",
        },
        "names": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "rate": {"type": "number", "exclusiveMinimum": 0, "default": 0.003},
        "flag": {"type": "boolean", "default": False},
        "jobs": {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/job"}},
    },
    "$defs": {
        "job": {
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string", "enum": ["a", "b"]},
                "inner": {
                    "type": "object",
                    "description": "a nested block",
                    "default": {},
                    "allOf": [
                        {
                            "if": {"required": ["shape"], "properties": {"shape": {"enum": ["wide"]}}},
                            "then": {"properties": {"width": {"default": 9}}},
                        }
                    ],
                    "properties": {
                        "sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "default": [3, 9]},
                        "shape": {"type": "string", "enum": ["wide", "narrow"], "default": "narrow"},
                        "width": {"type": "integer", "minimum": 1},
                    },
                },
            },
        }
    },
}


def _row(page: str, key: str) -> str:
    return next(line for line in page.splitlines() if line.startswith(f"| `{key}` |"))


def test_committed_page_matches_schema():
    expected = configref.render(configref.load_schema())
    assert PAGE.exists() and PAGE.read_text(encoding="utf-8") == expected, (
        f"{configref.PAGE} is out of date with workflow/schemas/config.schema.yaml: "
        f"run `{configref.REGENERATE}` from the repository root"
    )


def test_every_schema_key_is_documented():
    page = PAGE.read_text(encoding="utf-8")
    schema = configref.load_schema()
    for key in list(schema["properties"]) + list(schema["$defs"]["task"]["properties"]):
        assert f"| `{key}` |" in page, key


def test_defaults_enums_and_bounds():
    page = configref.render(SMALL)
    assert _row(page, "mode") == "| `mode` | one of `fast`, `slow` | `fast` | speed \\| care. |"
    assert _row(page, "seed") == "| `seed` | integer ≥ 0 | *required* | random seed. |"
    assert "`auto`; or number, 0 ≤ x ≤ 1" in _row(page, "ratio")
    assert "| `auto` |" in _row(page, "ratio")
    assert _row(page, "rate").startswith("| `rate` | number > 0 | `0.003` |")
    assert "| `false` |" in _row(page, "flag")
    assert "list of string, at least 2 items" in _row(page, "names")


def test_nested_objects_and_ref_get_their_own_sections():
    page = configref.render(SMALL)
    assert '<a id="config-jobs-name"></a>' in page and "## `jobs.<name>`" in page
    assert "## `jobs.<name>.inner`" in page
    assert "Schema: `#/$defs/job`." in page  # the $ref is named where it is followed
    assert "mapping: name → [object](#config-jobs-name)" in _row(page, "jobs")
    assert "[object](#config-jobs-name-inner)" in _row(page, "inner")
    assert _row(page, "kind") == "| `kind` | one of `a`, `b` | *required* |  |"
    assert _row(page, "sizes").startswith("| `sizes` | list of integer ≥ 1 | `[3, 9]` |")
    assert "| `{}` |" in _row(page, "inner")
    assert _row(page, "width").startswith("| `width` | integer ≥ 1 | `9` with `shape: wide` |")  # allOf if/then
    # sections come in schema order, each parent before its children
    assert page.index("## Top level") < page.index("## `jobs.<name>`") < page.index("## `jobs.<name>.inner`")


def test_check_flags_a_stale_page(tmp_path, capsys):
    schema = tmp_path / "schema.yaml"
    schema.write_text("type: object\nproperties:\n  seed: {type: integer, default: 1}\n")
    page = tmp_path / "configuration.md"
    assert configref.main(["--schema", str(schema)]) == 0
    page.write_text(capsys.readouterr().out)
    assert configref.main(["--schema", str(schema), "--check", str(page)]) == 0
    page.write_text(page.read_text() + "edited by hand\n")
    assert configref.main(["--schema", str(schema), "--check", str(page)]) == 1
    assert configref.REGENERATE in capsys.readouterr().err
