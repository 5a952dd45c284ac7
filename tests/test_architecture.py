"""The package's layers, checked by import-linter (contracts in pyproject.toml), and what they must catch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "plugins" / "mlops"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(plugins_dir: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(plugins_dir)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_hold():
    out = lint_imports(REPO / "plugins", REPO / "pyproject.toml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "named"),
    [
        ("core/interval.py", "from mlops.io import lake", "layers", "mlops.core.interval -> mlops.io.lake"),
        ("io/lake.py", "from mlops.stages import score", "layers", "mlops.io.lake -> mlops.stages.score"),
        (
            "stages/validate.py",
            "def f():\n    from mlops.stages.train import fit\n",
            "no stage imports another stage",
            "mlops.stages.validate -> mlops.stages.train",
        ),
        ("stages/score.py", "import airflow.sdk", "no Airflow below", "mlops.stages.score -> airflow"),
        ("core/metrics.py", "import mlflow", "the domain does no I/O", "mlops.core.metrics -> mlflow"),
    ],
)
def test_a_forbidden_import_fails_naming_it(tmp_path, module, line, contract, named):
    """A copy of the package with one forbidden import added: the check fails and names the import."""
    shutil.copytree(PACKAGE, tmp_path / "plugins" / "mlops", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "plugins" / "mlops" / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    out = lint_imports(tmp_path / "plugins", tmp_path / "pyproject.toml")
    assert out.returncode != 0
    broken = out.stdout[out.stdout.index("Broken contracts") :]
    assert contract in broken and named in broken, out.stdout


def test_no_module_left_at_the_top_of_the_package():
    top = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py")
    assert top == ["__init__.py"]
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert layers == {"core", "io", "reporting", "stages", "airflow", "local"}
    for layer in layers:
        doc = (PACKAGE / layer / "__init__.py").read_text()
        assert doc.startswith('"""') and "import" in doc.lower(), f"{layer}/__init__.py must say what it may import"
