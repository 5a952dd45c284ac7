"""What the validation and monitoring reports share: a list of checks, each with a severity."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


class CheckOutcomes:
    """Mixin for a dataclass report whose `checks` each carry `success` and `severity` (error|warning)."""

    checks: list[dict[str, Any]]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The error-level checks that failed: they stop the chain."""
        return [c for c in self.checks if not c["success"] and c["severity"] == "error"]

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """The warning-level checks that failed: reported only."""
        return [c for c in self.checks if not c["success"] and c["severity"] == "warning"]

    @property
    def success(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success": self.success}


def shorten(value: Any, width: int = 240) -> str:
    """A value's text, cut to `width` characters for one-line messages."""
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."
