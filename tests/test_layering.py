"""The layering of docs/DESIGN: steps are entry points that only workflow/scripts import; the
core and the benchmarks never import a step, and a workflow script imports nothing but its
step and the runtime plumbing. Imports are read with ``ast``, so comments and strings do not
count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "barloc"
STEPS = SRC / "steps"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` gives a.b and a.b.c), at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_steps(module: str) -> bool:
    return module == "barloc.steps" or module.startswith("barloc.steps.")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


CORE_AND_BENCHMARKS = sorted(
    p for p in [*SRC.rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")] if STEPS not in p.parents
)


@pytest.mark.parametrize("path", CORE_AND_BENCHMARKS, ids=_rel)
def test_nothing_outside_the_steps_imports_a_step(path):
    bad = sorted(m for m in imported_modules(path) if _is_steps(m))
    assert not bad, f"{_rel(path)} imports {', '.join(bad)}: entry points call the core, never each other"


@pytest.mark.parametrize("path", sorted((REPO / "workflow" / "scripts").glob("*.py")), ids=_rel)
def test_workflow_scripts_import_only_steps_and_runtime(path):
    barloc = {m for m in imported_modules(path) if m == "barloc" or m.startswith("barloc.")}
    bad = sorted(m for m in barloc if not (_is_steps(m) or m == "barloc.runtime" or m.startswith("barloc.runtime.")))
    assert not bad, f"{_rel(path)} imports {', '.join(bad)}; a workflow script runs one step through barloc.runtime"


def test_the_check_sees_imports_and_ignores_comments(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "# from barloc.steps import train\nimport os\n"
        "def g():\n    from barloc.steps.predict import run\n    s = 'import barloc.steps'\n"
    )
    assert {m for m in imported_modules(f) if _is_steps(m)} == {"barloc.steps.predict", "barloc.steps.predict.run"}
