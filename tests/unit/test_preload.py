"""plugins/preload.py: with MLOPS_PRELOAD=1, loading the plugin imports every task library it names.

A misspelt module would stop every Airflow process of the stack at start: the plugin is imported in a
fresh interpreter, as Airflow's plugin manager does, and each name must then be loaded, matplotlib on
the Agg backend that our plots use, and MLflow's module-to-package map built (a train task's 0.2 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mlops.core.config import REPO_ROOT


def test_the_preload_plugin_imports_every_module_it_names():
    code = (
        "import json, sys, matplotlib, preload\n"
        "from mlflow.utils import requirements_utils as r\n"
        "print(json.dumps({'missing': [m for m in preload.PRELOADED if m not in sys.modules],\n"
        "                  'pyplot': 'matplotlib.pyplot' in sys.modules,\n"
        "                  'packages': bool(r._MODULES_TO_PACKAGES and 'sklearn' in r._MODULES_TO_PACKAGES),\n"
        "                  'backend': matplotlib.get_backend().lower(), 'count': len(preload.PRELOADED)}))\n"
    )
    env = {**os.environ, "MLOPS_PRELOAD": "1", "PYTHONPATH": str(REPO_ROOT / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"missing": [], "pyplot": True, "packages": True, "backend": "agg", "count": loaded["count"]}
    assert loaded["count"] >= 20


def test_without_the_switch_the_plugin_imports_none_of_them():
    code = (
        "import json, sys, preload\nprint(json.dumps('matplotlib.pyplot' in sys.modules or 'mlflow' in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_PRELOAD"} | {"PYTHONPATH": str(REPO_ROOT / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False
