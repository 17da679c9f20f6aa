"""The package's dependency rule (README, "Development"), checked on every module's imports.

Each layer imports only from the layers below it; ``core`` imports neither Lightning nor Hydra,
``engine`` not Hydra. A violation names the module and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

from nst_exp import PACKAGE_DIR

ORDER = ["errors", "core", "engine", "config", "runtime", "batched", "reporting", "train"]
FORBIDDEN = {"core": ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf"),
             "engine": ("hydra",)}


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "nst_exp" and len(parts) > 1 and parts[1] in ORDER else None


def violations(package_dir: Path) -> list[str]:
    """Every import in ``package_dir`` (an ``nst_exp`` tree) that breaks the rule."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        module = ".".join(path.relative_to(package_dir.parent).with_suffix("").parts)
        mine = layer_of(module)
        if mine is None:
            continue
        for name in imports(path):
            other = layer_of(name)
            if other is not None and ORDER.index(other) > ORDER.index(mine):
                found.append(f"{module} imports {name} (a layer above it)")
            if name.split(".")[0] in FORBIDDEN.get(mine, ()):
                found.append(f"{module} imports {name} ({mine} stays free of it)")
    return found


def test_every_import_points_down_the_layers() -> None:
    assert not violations(PACKAGE_DIR), "\n".join(violations(PACKAGE_DIR))


def test_the_rule_catches_upward_and_forbidden_imports(tmp_path: Path) -> None:
    engine = tmp_path / "nst_exp" / "engine"
    engine.mkdir(parents=True)
    (engine / "bad.py").write_text("from nst_exp.runtime.build import build_module\nimport hydra\n"
                                   "from nst_exp.core.losses import gram_matrix\n")
    assert violations(tmp_path / "nst_exp") == [
        "nst_exp.engine.bad imports nst_exp.runtime.build (a layer above it)",
        "nst_exp.engine.bad imports hydra (engine stays free of it)"]
