"""The configuration reference (docs/configuration.md), rendered from the config schema.

The schema (src/barloc/schemas/config.schema.yaml) is the one home of every key, its type and its
default; this module only writes it out as Markdown, so the page cannot drift from what
validation accepts. ``python -m barloc.configref > docs/configuration.md`` regenerates the page,
``--check FILE`` tells whether FILE is current (tests/test_configref.py runs the same check).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from barloc.config import SCHEMA_PATH, load_schema

#: The generated page, relative to the repository root.
PAGE = "docs/configuration.md"
REGENERATE = f"python -m barloc.configref > {PAGE}"


@dataclass(frozen=True)
class Section:
    """One object of the schema: its dotted path in the config and its (resolved) schema."""

    path: str
    schema: dict
    ref: str | None = None


def render(schema: dict) -> str:
    """The Markdown reference of ``schema``: a section per object, a table per section
    (key, type / allowed values, default, description), top level first, nested objects
    after their parent in schema order."""
    title = schema.get("description") or "Configuration"
    out = [
        f"<!-- Generated from the config schema by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "# Configuration reference",
        "",
        (
            f"{_sentence(title)} Every key is checked against the schema, `src/barloc/schemas/config.schema.yaml`, before a run: "
            "an unknown key or a value of the wrong type stops the run with one line naming it. "
            "Keys marked *required* must be set; any other key may be left out, and then takes the default "
            "shown (where none is shown, the key's description says what its absence means)."
        ),
        "",
    ]
    for section in _sections(schema, Section("config", schema)):
        out += _render_section(schema, section)
    return "\n".join(out).rstrip("\n") + "\n"


# --- walking the schema ------------------------------------------------------------------------


def _resolve(root: dict, node: dict) -> tuple[dict, str | None]:
    """``node`` with a local ``$ref`` followed (siblings of the ref win), and the ref's name."""
    ref = node.get("$ref")
    if not ref:
        return node, None
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported, not {ref!r}")
    target: object = root
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]  # type: ignore[index]
    resolved, _ = _resolve(root, target)  # type: ignore[arg-type]
    return {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}, ref


def _child_object(root: dict, prop: dict) -> tuple[str, dict, str | None] | None:
    """The object section a property opens, if any: ("", schema) for an object with its own
    properties, ("<name>", schema) for a mapping whose values are such objects."""
    node, ref = _resolve(root, prop)
    if node.get("properties"):
        return "", node, ref
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        value, vref = _resolve(root, extra)
        if value.get("properties"):
            return ".<name>", value, vref
    return None


def _sections(root: dict, section: Section) -> list[Section]:
    out = [section]
    for key, prop in section.schema.get("properties", {}).items():
        child = _child_object(root, prop)
        if child:
            suffix, node, ref = child
            out += _sections(root, Section(f"{section.path}.{key}{suffix}", node, ref))
    return out


# --- rendering ---------------------------------------------------------------------------------


def _anchor(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _title(path: str) -> str:
    return "Top level" if path == "config" else f"`{path.removeprefix('config.')}`"


def _render_section(root: dict, section: Section) -> list[str]:
    s = section.schema
    lines = [f'<a id="{_anchor(section.path)}"></a>', "", f"## {_title(section.path)}", ""]
    intro = []
    if section.path != "config" and s.get("description"):
        intro.append(_sentence(s["description"]))
    if section.path.endswith(".<name>"):
        parent = section.path.removesuffix(".<name>").removeprefix("config.")
        intro.append(f"One entry of `{parent}`, named by its key.")
    if section.ref:
        intro.append(f"Schema: `{section.ref}`.")
    if intro:
        lines += [" ".join(intro), ""]
    props = s.get("properties", {})
    if not props:
        return lines + ["(no keys)", ""]
    required = set(s.get("required", []))
    conditional = _conditional_defaults(s)
    lines += ["| key | type / allowed values | default | description |", "|---|---|---|---|"]
    for key, prop in props.items():
        node, _ = _resolve(root, prop)
        child = _child_object(root, prop)
        if child:
            suffix, _, _ = child
            target = f"{section.path}.{key}{suffix}"
            kind = "mapping: name → " if suffix else ""
            type_text = f"{kind}[object](#{_anchor(target)})"
            if suffix:
                type_text += _mapping_limits(node)
        else:
            type_text = _type(root, prop)
        defaults = []
        if "default" in prop or "default" in node:
            defaults.append(_code(_value(prop.get("default", node.get("default")))))
        defaults += [f"{_code(_value(value))} with {when}" for when, value in conditional.get(key, [])]
        default = "; ".join(defaults) or ("*required*" if key in required else "")
        desc = prop.get("description", node.get("description", ""))
        lines.append(f"| `{key}` | {_cell(type_text)} | {_cell(default)} | {_cell(_sentence(desc) if desc else '')} |")
    return lines + [""]


def _conditional_defaults(section: dict) -> dict[str, list[tuple[str, object]]]:
    """Defaults that depend on a sibling key: ``allOf: [{if: ..., then: {properties: {key:
    {default: ...}}}}]`` gives key -> [("`sibling: value`", default), ...]."""
    out: dict[str, list[tuple[str, object]]] = {}
    for rule in section.get("allOf", []):
        if "if" not in rule:
            continue
        when = _condition(rule["if"])
        for key, sub in (rule.get("then") or {}).get("properties", {}).items():
            if "default" in sub:
                out.setdefault(key, []).append((when, sub["default"]))
        for key, sub in (rule.get("else") or {}).get("properties", {}).items():
            if "default" in sub:
                out.setdefault(key, []).append((f"not {when}", sub["default"]))
    return out


def _condition(node: dict) -> str:
    """An ``if`` schema as words: ``key: value`` for each property it pins."""
    parts = []
    for key, sub in node.get("properties", {}).items():
        values = sub.get("enum", [sub["const"]] if "const" in sub else None)
        if values is None:
            parts.append(f"`{key}` set")
        else:
            parts.append(" or ".join(_code(f"{key}: {_value(v)}") for v in values))
    return " and ".join(parts) or "a condition"


def _mapping_limits(node: dict) -> str:
    parts = []
    pattern = (node.get("propertyNames") or {}).get("pattern")
    if pattern:
        parts.append(f"names match `{pattern}`")
    if "minProperties" in node:
        parts.append(f"at least {node['minProperties']}")
    if "maxProperties" in node:
        parts.append(f"at most {node['maxProperties']}")
    return f" ({'; '.join(parts)})" if parts else ""


def _type(root: dict, prop: dict) -> str:
    """One schema node as words: type, allowed values and bounds."""
    node, ref = _resolve(root, prop)
    for combinator, joiner in (("oneOf", " or "), ("anyOf", " or ")):
        if combinator in node:
            alts = [_type(root, alt) for alt in node[combinator]]
            text = (";" + joiner if any("," in a for a in alts) else joiner).join(alts)
            return f"{text} (`{ref}`)" if ref else text
    if "const" in node:
        return _code(_value(node["const"]))
    if "enum" in node:
        values = ", ".join(_code(_value(v)) for v in node["enum"])
        return f"one of {values}" if len(node["enum"]) > 1 else values
    types = node.get("type")
    names = types if isinstance(types, list) else [types] if types else []
    if names == ["array"]:
        text = "list"
        if isinstance(node.get("items"), dict):
            text += f" of {_type(root, node['items'])}"
        text += _counts(node.get("minItems"), node.get("maxItems"), "item")
    elif names == ["object"] or (not names and "additionalProperties" in node):
        extra = node.get("additionalProperties")
        text = f"mapping: name → {_type(root, extra)}" if isinstance(extra, dict) else "object"
        text += _counts(node.get("minProperties"), node.get("maxProperties"), "entry", "entries")
    else:
        text = " or ".join(names) if names else "any"
        text += _bounds(node)
        if "pattern" in node:
            text += f" matching `{node['pattern']}`"
    return f"{text} (`{ref}`)" if ref else text


def _bounds(node: dict) -> str:
    low = (
        (">=", node["minimum"])
        if "minimum" in node
        else (">", node["exclusiveMinimum"])
        if "exclusiveMinimum" in node
        else None
    )
    high = (
        ("<=", node["maximum"])
        if "maximum" in node
        else ("<", node["exclusiveMaximum"])
        if "exclusiveMaximum" in node
        else None
    )
    sym = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}
    if low and high:
        left = {">=": "≤", ">": "<"}[low[0]]
        return f", {_value(low[1])} {left} x {sym[high[0]]} {_value(high[1])}"
    if low:
        return f" {sym[low[0]]} {_value(low[1])}"
    if high:
        return f" {sym[high[0]]} {_value(high[1])}"
    return ""


def _counts(low: int | None, high: int | None, noun: str, plural: str | None = None) -> str:
    plural = plural or noun + "s"
    if low is not None and high is not None:
        return f", {low} to {high} {plural}"
    if low is not None:
        return f", at least {low} {noun if low == 1 else plural}"
    if high is not None:
        return f", at most {high} {noun if high == 1 else plural}"
    return ""


def _value(v: object) -> str:
    """A YAML literal as a user would write it in config.yaml."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return v if v and re.fullmatch(r"[A-Za-z0-9_.\-/+:]+", v) else f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _code(text: str) -> str:
    return f"`{text}`"


def _sentence(text: str) -> str:
    """Whitespace collapsed, a full stop added: schema descriptions are fragments."""
    text = " ".join(str(text).split())
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def _cell(text: str) -> str:
    """Table-safe: pipes escaped, ``<`` outside code spans as an entity (not an HTML tag)."""
    parts = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    safe = [p if p.startswith("`") else p.replace("<", "&lt;") for p in parts]
    return "".join(safe).replace("|", "\\|")


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m barloc.configref", description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default=str(SCHEMA_PATH), help="config schema (default: barloc's own)")
    parser.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the rendered page")
    args = parser.parse_args(argv)
    page = render(load_schema(args.schema))
    if args.check is None:
        sys.stdout.write(page)
        return 0
    current = Path(args.check).read_text(encoding="utf-8") if Path(args.check).exists() else None
    if current == page:
        return 0
    state = "is missing" if current is None else "is out of date with the config schema"
    print(f"{args.check} {state}: run `{REGENERATE}`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
