"""The rules' conda environments (envs/*.yaml, for `snakemake --sdm conda`) pin the same
packages with the same bounds as pyproject.toml, so a conda run and a pip install agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# conda-forge name -> PyPI name, where they differ.
CONDA_TO_PYPI = {"pytorch": "torch"}
# PyPI dependencies a rule's environment does not need: Snakemake runs the rules and puts its
# own package on the script's path.
NOT_IN_ENVS = {"snakemake"}
CONDA_ONLY = {"python", "pip"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_spec(spec: str) -> tuple[str, SpecifierSet]:
    """'pytorch>=2.4,<=2.14.1' -> ('torch', SpecifierSet); conda's 'python=3.11' means 3.11.*."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec)
    assert m, f"unreadable conda spec {spec!r}"
    name, version = m.group(1), m.group(2).replace(" ", "")
    if re.fullmatch(r"=[^=<>!,]+", version):
        version = f"=={version[1:].rstrip('.*')}.*"
    return _norm(CONDA_TO_PYPI.get(name, name)), SpecifierSet(version)


def pyproject_deps() -> dict[str, SpecifierSet]:
    deps = {}
    for line in PYPROJECT["project"]["dependencies"]:
        req = Requirement(line)
        deps[_norm(req.name)] = req.specifier
    return deps


def env_deps(path: Path) -> tuple[dict[str, SpecifierSet], list[str]]:
    """(conda packages by PyPI name, pip lines) of one environment file."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep.get("pip", [])
        else:
            name, spec = conda_spec(dep)
            assert name not in conda, f"{path.name}: {name} listed twice"
            conda[name] = spec
    return conda, pip


def test_there_are_env_files_and_every_rule_names_one_that_exists():
    assert ENVS
    named = set()
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        rules = re.findall(r"^rule (\w+):", text, flags=re.M)
        envs = re.findall(r"^    conda:\s*\n\s+\"([^\"]+)\"", text, flags=re.M)
        assert len(envs) == len(rules), f"{smk.name}: {len(rules)} rules but {len(envs)} conda: directives"
        for env in envs:
            path = (smk.parent / env).resolve()
            assert path.exists(), f"{smk.name}: conda env {env} does not exist"
            named.add(path)
    assert named == {p.resolve() for p in ENVS}, "an env file no rule uses, or a rule env outside envs/"


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_pins_match_pyproject(env):
    conda, pip = env_deps(env)
    deps = pyproject_deps()
    wanted = {n: s for n, s in deps.items() if n not in NOT_IN_ENVS}
    have = {n: s for n, s in conda.items() if n not in CONDA_ONLY}
    assert set(have) == set(wanted), (
        f"{env.name}: missing {sorted(set(wanted) - set(have))}, not in pyproject {sorted(set(have) - set(wanted))}"
    )
    differ = {n: (str(have[n]), str(wanted[n])) for n in wanted if have[n] != wanted[n]}
    assert not differ, f"{env.name} vs pyproject.toml bounds (env, pyproject): {differ}"
    # The project itself, installed into the environment from the repository (envs/ is one
    # level below it), so the rules import the same barloc code.
    assert any(re.fullmatch(r"-e\s+\.\./?", line.strip()) for line in pip), pip


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_python_meets_requires_python(env):
    conda, _ = env_deps(env)
    assert "python" in conda, f"{env.name} does not pin python"
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    pinned = conda["python"]
    # The lowest version the env's pin allows must satisfy requires-python.
    lowest = min((Version(s.version.rstrip(".*")) for s in pinned if s.operator in ("==", ">=", "~=")), default=None)
    assert lowest is not None and lowest in requires, (env.name, str(pinned), str(requires))


def test_conda_spec_parsing():
    assert conda_spec("pytorch>=2.4,<=2.14.1") == ("torch", SpecifierSet(">=2.4,<=2.14.1"))
    assert conda_spec("python=3.11") == ("python", SpecifierSet("==3.11.*"))
    assert conda_spec("scikit-learn >=1.4") == ("scikit-learn", SpecifierSet(">=1.4"))
    assert conda_spec("pip") == ("pip", SpecifierSet(""))
