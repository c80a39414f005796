"""The two dependency lists agree, and the CI entry point runs the README's test command."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins_from_pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.replace(" ", "").split("==") for d in deps)


def _pins_from_environment() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s*([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def test_every_dependency_is_pinned():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    unpinned = [d for d in deps if "==" not in d]
    assert not unpinned, f"pin these in pyproject.toml: {unpinned}"
    assert _pins_from_pyproject()["torch"] == "2.13.0"


def test_environment_yml_matches_pyproject():
    py, env = _pins_from_pyproject(), _pins_from_environment()
    only_py = {k: v for k, v in py.items() if env.get(k) != v}
    only_env = {k: v for k, v in env.items() if py.get(k) != v}
    assert not only_py and not only_env, (
        f"environment.yml and pyproject.toml disagree: pyproject has {only_py}, environment.yml has {only_env}"
    )


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make course" in readme and "make test" in readme
