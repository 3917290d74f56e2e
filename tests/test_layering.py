"""Imports flow one way: data -> model -> training -> runtime -> ROS -> evaluation -> recording ->
demo -> CLI (docs/ARCHITECTURE.md). Read from the source with ``ast``, so a cycle introduced by a
lazy import inside a function is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("df_policy", "data_collection", "calibration")
# lowest first; a unit may import units of its own or lower layers only
LAYERS = (
    {"df_policy", "df_policy.data", "df_policy.sim", "calibration"},
    {"df_policy.model"},
    {"df_policy.training"},
    {"df_policy.runtime"},
    {"df_policy.ros"},
    {"df_policy.evaluation"},
    {"data_collection"},
    {"df_policy.demo"},
    {"df_policy.cli"},
)
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "df_policy":
        return parts[0]
    return ".".join(parts[:2])


def _imports(path: Path, module: str) -> set[str]:
    out = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.add(node.module)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def test_imports_flow_one_way_between_layers():
    violations, seen = [], set()
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            src = _unit(module)
            assert src in LAYER_OF, f"{module}: unit {src!r} has no layer in tests/test_layering.py"
            seen.add(src)
            for imported in _imports(path, module):
                dst = _unit(imported)
                if LAYER_OF.get(dst, -1) > LAYER_OF[src]:
                    violations.append(f"{path.relative_to(REPO)} imports {imported} ({dst} is above {src})")
    assert not violations, "imports against the layering:\n" + "\n".join(violations)
    assert {"df_policy.model", "df_policy.runtime", "df_policy.ros", "data_collection"} <= seen
