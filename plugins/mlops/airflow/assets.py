"""Airflow Assets of a pipeline: its champion model, updated when promotion or rollback moves the alias.

The promote and rollback tasks declare the alias `<name>_champion_changes` as their outlet and add an
event for the asset `<name>_champion` only when the champion really changed; the `<name>_rescore` DAG
is scheduled on that asset.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAlias


def champion_asset(pipeline: str) -> Asset:
    """The pipeline's champion model as an Airflow Asset."""
    return Asset(name=f"{pipeline}_champion", uri=f"x-mlops://{pipeline}/champion", group="model")


def champion_changes(pipeline: str) -> AssetAlias:
    """The alias through which a task reports a new champion (no event when nothing changed)."""
    return AssetAlias(name=f"{pipeline}_champion_changes", group="model")


def announce_champion(context: Any, pipeline: str, version: str, event: str) -> None:
    """Record an event on the champion asset: `event` (promotion, rollback) made `version` champion."""
    context["outlet_events"][champion_changes(pipeline)].add(
        champion_asset(pipeline), extra={"version": version, "event": event}
    )
