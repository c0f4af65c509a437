"""The Dockerfile bakes exactly pyproject.toml's pins (dependencies + the gpu extra), so a
cluster node runs the versions the CPU path is tested with."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r'"([A-Za-z0-9_.\[\],-]+)==([^"]+)"')


def dockerfile_pins() -> dict[str, str]:
    return dict(PIN.findall((ROOT / "Dockerfile").read_text()))


def pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["gpu"]]


def test_dockerfile_pins_are_pyprojects():
    pinned = dict(r.split("==") for r in pyproject_requirements() if "==" in r)
    assert dockerfile_pins() == pinned


def test_only_torch_is_left_to_vllm():
    # vLLM pins its own CUDA torch; every other requirement is an exact pin.
    unpinned = [r for r in pyproject_requirements() if "==" not in r]
    assert [re.split(r"[<>=]", r)[0] for r in unpinned] == ["torch"]
    assert "torch" not in dockerfile_pins()
