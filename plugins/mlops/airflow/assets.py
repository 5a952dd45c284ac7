"""Airflow Assets of a pipeline: its champion model, and its degradation.

The promote and rollback tasks declare the alias `<name>_champion_changes` as their outlet and add an
event for the asset `<name>_champion` only when the champion really changed; the `<name>_rescore` DAG
is scheduled on that asset.

The outcomes task declares the alias `<name>_degradation_signals` as its outlet and adds an event on
the asset `<name>_degraded` only when sustained degradation was judged and may trigger a retrain
(not in a backfill, not rate-limited); the `<name>_retrain` DAG runs on its cron or on that asset.
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


def degraded_asset(pipeline: str) -> Asset:
    """The pipeline's model as degraded: an event asks for a retrain (extra: reason, signal, day, days, values)."""
    return Asset(name=f"{pipeline}_degraded", uri=f"x-mlops://{pipeline}/degraded", group="model")


def degradation_signals(pipeline: str) -> AssetAlias:
    """The alias through which the outcomes task reports degradation (no event when none is due)."""
    return AssetAlias(name=f"{pipeline}_degradation_signals", group="model")


def announce_degradation(context: Any, pipeline: str, extra: dict[str, Any]) -> None:
    """Record an event on the degraded asset with `extra` (JSON values: reason, signal, day, days, values)."""
    context["outlet_events"][degradation_signals(pipeline)].add(degraded_asset(pipeline), extra=extra)


def degradation_event(context: Any, pipeline: str) -> dict[str, Any] | None:
    """The extra of the latest `<name>_degraded` event that triggered this run, or None (not asset-triggered)."""
    events = context.get("triggering_asset_events") or {}
    try:
        found = list(events[degraded_asset(pipeline)])
    except (KeyError, TypeError):
        return None
    if not found:
        return None
    return dict(found[-1].extra or {})
