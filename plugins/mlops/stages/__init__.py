"""The stages: plain Python, no Airflow import, typed inputs and outputs.

Each stage is a module of functions over `mlops.reporting`, `mlops.io` and `mlops.core`; no stage imports
another (what two stages share lives in `io` or `core`).
"""
