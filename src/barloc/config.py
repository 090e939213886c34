"""Config validation with one readable line a problem (the schema stays the single source)."""

from __future__ import annotations

import difflib
from pathlib import Path

import jsonschema
import yaml

from barloc.errors import InputError


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _explain(err: jsonschema.ValidationError) -> str:
    where = _where(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        hints = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{where}: " + "; ".join(hints) + f"; allowed keys: {', '.join(allowed)}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    return f"{where}: {err.message}"


def check_config(config: dict, schema_path: str | Path, source: str = "config") -> None:
    """Raise InputError listing every schema violation, one per line, most specific first."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise InputError(source, "invalid configuration: " + " | ".join(_explain(e) for e in errors))
