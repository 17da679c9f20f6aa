"""The one build step pyproject.toml cannot say: ship the top-level ``conf/`` inside the package.

The configs live at the top of the checkout (the design card's layout); a wheel carries them as
``nst_exp/conf/`` so an installed ``nst-train`` finds them beside its code (nst_exp/__init__.py,
``CONFIG_DIR``). A package-dir mapping would do it too, but it turns editable installs into
setuptools' import-hook mode, whose namespace path Hydra's plugin scan cannot list: the
launchers in ``hydra_plugins/`` would go missing from ``pip install -e .``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildWithConf(build_py):
    """build_py, then conf/*.yaml into the built package (an editable install reads conf/ in place)."""

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            shutil.copytree(CONF, Path(self.build_lib) / "nst_exp" / "conf", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("local", "__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithConf})
