"""The package's dependency rule (README, "Development"), checked on every module's imports.

Each layer imports only from the layers below it; ``core`` imports neither Lightning nor Hydra,
``engine`` not Hydra. The Hydra plugins (``hydra_plugins/``, the launchers) sit above ``strategies``:
they may use the package up to it (the runtime's job contract, the batch), never ``reporting`` or
``train``, and nothing in ``nst_exp`` imports them (Hydra finds them; the package must run without
them). A violation names the module and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

from nst_exp import PACKAGE_DIR

ORDER = ["errors", "core", "engine", "config", "runtime", "strategies", "reporting", "train"]
PLUGINS_ABOVE = "strategies"  # the highest layer a plugin may import
PLUGINS_DIR = PACKAGE_DIR.parent / "hydra_plugins"
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
            if name.split(".")[0] == "hydra_plugins":
                found.append(f"{module} imports {name} (the package never imports the plugins)")
    return found


def plugin_violations(plugins_dir: Path) -> list[str]:
    """Every import in ``plugins_dir`` (a ``hydra_plugins`` tree) of a layer above ``PLUGINS_ABOVE``."""
    found = []
    for path in sorted(plugins_dir.rglob("*.py")):
        module = ".".join(path.relative_to(plugins_dir.parent).with_suffix("").parts)
        for name in imports(path):
            other = layer_of(name)
            if other is not None and ORDER.index(other) > ORDER.index(PLUGINS_ABOVE):
                found.append(f"{module} imports {name} (plugins use the package up to {PLUGINS_ABOVE})")
    return found


def test_every_import_points_down_the_layers() -> None:
    assert not violations(PACKAGE_DIR), "\n".join(violations(PACKAGE_DIR))


def test_plugins_import_the_package_up_to_batched_and_are_never_imported_by_it() -> None:
    assert sorted(p.name for p in PLUGINS_DIR.iterdir() if p.is_dir() and p.name.startswith("nst_")) == [
        "nst_batched_launcher", "nst_process_launcher", "nst_submitit_launcher"]  # the rule sees them all
    assert not plugin_violations(PLUGINS_DIR), "\n".join(plugin_violations(PLUGINS_DIR))


def test_the_rule_catches_upward_and_forbidden_imports(tmp_path: Path) -> None:
    engine = tmp_path / "nst_exp" / "engine"
    engine.mkdir(parents=True)
    (engine / "bad.py").write_text("from nst_exp.runtime.build import build_module\nimport hydra\n"
                                   "from nst_exp.core.losses import gram_matrix\n")
    assert violations(tmp_path / "nst_exp") == [
        "nst_exp.engine.bad imports nst_exp.runtime.build (a layer above it)",
        "nst_exp.engine.bad imports hydra (engine stays free of it)"]


def test_the_plugin_rule_catches_reporting_train_and_reverse_imports(tmp_path: Path) -> None:
    plugin = tmp_path / "hydra_plugins" / "nst_x"
    plugin.mkdir(parents=True)
    (plugin / "bad.py").write_text("from nst_exp.strategies.batched.batch import batch_key\nimport nst_exp.train\n"
                                   "def f():\n    from nst_exp.reporting import compare\n")
    assert plugin_violations(tmp_path / "hydra_plugins") == [
        "hydra_plugins.nst_x.bad imports nst_exp.train (plugins use the package up to strategies)",
        "hydra_plugins.nst_x.bad imports nst_exp.reporting (plugins use the package up to strategies)"]
    runtime = tmp_path / "nst_exp" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "bad.py").write_text("def f():\n    from hydra_plugins.nst_x.bad import f\n")
    assert violations(tmp_path / "nst_exp") == [
        "nst_exp.runtime.bad imports hydra_plugins.nst_x.bad (the package never imports the plugins)"]
