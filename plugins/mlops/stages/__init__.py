"""The seven stages: plain Python, no Airflow import, typed inputs and outputs."""
