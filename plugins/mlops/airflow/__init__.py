"""The Airflow adapters: DAG factory, one operator per stage, extra links, assets, failure notifier,
the embedded Airflow environment. Operators only translate Airflow context into stage calls.

May import `mlops.stages` and everything below it.
"""
