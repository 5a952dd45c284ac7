"""The domain, pure: config model, data intervals, features and row keys, time splits, model building,
metrics and bootstrap, drift statistics, check outcomes.

No I/O beyond reading the pipeline YAML files. Imports nothing else of `mlops`.
"""
