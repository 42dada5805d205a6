"""The packaging files agree with each other and with the README."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}


def _split_requirement(req: str) -> tuple[str, str]:
    """'torch>=2.2' -> ('torch', '>=2.2')"""
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert match, f"unparseable requirement {req!r}"
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def _pyproject_requirements(path: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    project = tomllib.loads(path.read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    return dict(_split_requirement(r) for r in reqs)


def _environment_requirements(path: Path = ROOT / "environment.yml") -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    found = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for pip_req in dep.get("pip", []):
                name, spec = _split_requirement(pip_req)
                found[name] = spec
            continue
        name, spec = _split_requirement(dep.replace("=", "==", 1) if re.match(r"^[\w\-]+=[^=]", dep) else dep)
        if name in ("python", "pip"):
            continue
        found[CONDA_TO_PYPI.get(name, name)] = spec
    return found


def disagreements(pyproject: dict[str, str], environment: dict[str, str]) -> list[str]:
    problems = [f"only in pyproject.toml: {n}" for n in sorted(set(pyproject) - set(environment))]
    problems += [f"only in environment.yml: {n}" for n in sorted(set(environment) - set(pyproject))]
    problems += [
        f"{n}: pyproject {pyproject[n]!r} vs environment.yml {environment[n]!r}"
        for n in sorted(set(pyproject) & set(environment))
        if pyproject[n] != environment[n]
    ]
    return problems


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert disagreements(_pyproject_requirements(), _environment_requirements()) == []


def test_a_dropped_or_changed_package_is_noticed(tmp_path):
    text = (ROOT / "environment.yml").read_text()
    broken = tmp_path / "environment.yml"
    broken.write_text(text.replace("  - seaborn>=0.12\n", "").replace("decord>=0.6", "decord>=0.5"))
    problems = disagreements(_pyproject_requirements(), _environment_requirements(broken))
    assert "only in pyproject.toml: seaborn" in problems
    assert any(p.startswith("decord:") for p in problems)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci
    assert "make test" in readme and "make demo" in readme
    # the README's first lines give the two commands
    head = "\n".join(readme.splitlines()[:25])
    assert "make demo" in head and "make test" in head
