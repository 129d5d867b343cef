"""How the methods look in every table and plot (the run's, the evaluation's, the
miniature's): names, colours and markers, and number formatting."""

from __future__ import annotations

from typing import Any

METHOD_LABEL = {"self_rewarding": "Self-Rewarding", "temporal": "Temporal"}
METHOD_STYLE = {"self_rewarding": {"color": "tab:orange", "marker": "o"},
                "temporal": {"color": "tab:blue", "marker": "s"}}


def fmt(value: Any, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def method_label(method: str) -> str:
    return METHOD_LABEL.get(method, method)


def by_method(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["method"], []).append(row)
    return grouped
