"""The package's layers (docs/design.md §2): imports go down only, never in a cycle, and neither
the configs nor the CLI's start import Ray, torch or vLLM."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "diversens"
# Lowest first; a package may import only from packages in lower layers (and from itself).
LAYERS = [
    {"ranges"},
    {"errors", "text", "schema", "pools", "stage"},
    {"config"},
    {"storage"},
    {"io", "output_lock", "weights"},
    {"artifacts", "console", "models", "nodes"},
    {"prompts"},
    {"measures"},
    {"plan", "sampling", "scoring", "selection", "training"},
    {"evaluation", "pilot"},
    {"jobs"},
    {"commands"},
    {"cli"},
    {"__main__", "options_doc"},  # python -m diversens; python -m diversens.options_doc
]
LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """diversens modules `path` imports (at any depth of the file: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diversens"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("diversens")}
    return found


GRAPH = {module_name(p): imports(p) for p in PKG.rglob("*.py")}
GRAPH = {m: {d for d in deps if d in GRAPH and d != m} for m, deps in GRAPH.items()}


def package(module: str) -> str:
    return module.split(".")[1] if "." in module else "diversens"


def test_every_package_has_a_layer():
    assert {package(m) for m in GRAPH} - {"diversens"} <= set(LAYER)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_the_layers(module):
    upward = [d for d in GRAPH[module] if package(d) != package(module)
              and package(d) != "diversens" and LAYER[package(d)] >= LAYER[package(module)]]  # fmt: skip
    assert not upward, f"{module} imports {upward} from its own layer or above"


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(GRAPH[module]):
            assert state.get(dep) != 1, " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_configs_and_cli_start_import_no_ray_torch_or_vllm():
    code = (
        "import sys, diversens.cli, diversens.commands, diversens.jobs.config, "
        "diversens.evaluation.config, diversens.training.config, diversens.scoring.config\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'torch', 'vllm'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
