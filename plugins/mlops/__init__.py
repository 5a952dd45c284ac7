"""MLOps pipelines on Airflow.

Importing the package makes the thread pools of numpy's OpenBLAS and of scikit-learn's OpenMP (libgomp)
put their idle threads to sleep at once instead of spinning, unless the environment already chose
(`OPENBLAS_THREAD_TIMEOUT`, `OMP_WAIT_POLICY`). Each library reads its variable once, when it loads,
which is after this import in the project's entry points (the DAGs' tasks, `mlops`, the benchmarks,
the tests); the local and compose stacks set both for every process too. Why: the feature audit's
budget is CPU seconds of its process, and spinning threads count there as work. Measured: after a few
LogisticRegression fits, OpenBLAS's idle threads burnt 0.11 CPU s during a 0.3 s sleep; beside another
task, HistGradientBoosting's spinning OpenMP threads tripled the CPU seconds of a LOFO fit (from 1.1-1.3
to 2.7-3.9 s) and the audits tested no LOFO candidate (docs/benchmarks.md, four-week replays).
"""

import os

# the variables, as the stacks set them for every process (mlops.airflow.environment, docker-compose.yaml)
IDLE_THREADS_SLEEP = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "OPENBLAS_THREAD_TIMEOUT": "4",  # 2**4 cycles of spinning, OpenBLAS's least
}
for _name, _value in IDLE_THREADS_SLEEP.items():
    os.environ.setdefault(_name, _value)
