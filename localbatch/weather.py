"""Azure's weather, on demand: a typed, validated, seeded profile of what goes wrong.

The default profile (:data:`CALM`) changes nothing: nodes come at once, tasks
start at once, counts are exact and no request fails. ``serve --weather FILE``
(JSON or TOML, flat keys as in :class:`Weather`) or a preset name
(``azure-like``) turns elements on; ``--weather-seed`` overrides the file's
``seed``.

Every decision is a pure function of the seed, the element and a stable key
(pool id + node ordinal, job + task id, request ordinal), never of the clock
or of a shared random stream, so a run replays the same weather for the same
sequence of operations. A duration is a number of seconds or ``[low, high]``
(drawn per key, uniformly). Every setting is bounded; a bad one raises
:class:`WeatherError` naming the key.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

MAX_SECONDS = 3600.0
MAX_RETRY_AFTER = 300
THROTTLE_STATUSES = (429, 503)
RESIZE_ERROR_CODES = ("AccountCoreQuotaReached", "AllocationFailed")

Seconds = tuple[float, float]


class WeatherError(ValueError):
    """A weather profile that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Weather:
    """One weather profile. Rates are probabilities in [0, 1]; durations are seconds."""

    seed: int = 0
    # Nodes: `creating` (pool `resizing`) for allocation_delay, then `starting` for boot_delay.
    allocation_delay: Seconds = (0.0, 0.0)
    boot_delay: Seconds = (0.0, 0.0)
    # Tasks: time between the scheduler picking a task and the task running.
    task_latency: Seconds = (0.0, 0.0)
    # GET .../taskcounts answers from a snapshot up to this old (Batch: eventually consistent).
    task_counts_lag: float = 0.0
    # Requests refused before they are processed.
    throttle_rate: float = 0.0
    throttle_status: int = 503
    retry_after: int = 1
    server_error_rate: float = 0.0
    # Spot/low-priority nodes preempted preemption_after their start; back after preempted_for (0: never).
    preemption_rate: float = 0.0
    preemption_after: Seconds = (0.0, 0.0)
    preempted_for: Seconds = (0.0, 0.0)
    # Nodes turning `unusable` unusable_after they became ready (they stay unusable).
    unusable_rate: float = 0.0
    unusable_after: Seconds = (0.0, 0.0)
    # The pool's start task fails (exit code 1) on this share of nodes.
    start_task_failure_rate: float = 0.0
    # Resize errors: each node allocation fails (AllocationFailed); account quotas in nodes
    # across all pools (AccountCoreQuotaReached / AccountLowPriorityCoreQuotaReached); None = none.
    allocation_failure_rate: float = 0.0
    dedicated_node_quota: int | None = None
    low_priority_node_quota: int | None = None
    # After a task completes on a node, the node leaves the pool with this probability, taking its
    # task files (409 TaskFilesUnavailable); a new node takes its place.
    node_loss_rate: float = 0.0

    @property
    def calm(self) -> bool:
        return self == Weather(seed=self.seed)

    # ------------------------------------------------------------------ decisions

    def _unit(self, element: str, key: str) -> float:
        digest = hashlib.sha256(f"{self.seed}\0{element}\0{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def chance(self, element: str, rate: float, key: str) -> bool:
        """Whether ``element`` happens for ``key`` (deterministic from the seed)."""
        return rate > 0 and self._unit(element, key) < rate

    def seconds(self, element: str, span: Seconds, key: str) -> float:
        """A duration drawn from ``span`` for ``key`` (deterministic from the seed)."""
        low, high = span
        if high <= low:
            return low
        return low + (high - low) * self._unit(element + "/duration", key)


CALM = Weather()

PRESETS: dict[str, dict[str, Any]] = {
    # Figures and their sources: localbatch/README.md, "Weather". Durations are scaled
    # down 10x from Azure's (minutes become tens of seconds) so a local run stays usable.
    "azure-like": {
        "allocation_delay": [18.0, 48.0],
        "boot_delay": [6.0, 18.0],
        "task_latency": [0.2, 0.5],
        "task_counts_lag": 3.0,
        "throttle_rate": 0.01,
        "throttle_status": 503,
        "retry_after": 1,
        "server_error_rate": 0.002,
        "preemption_rate": 0.05,
        "preemption_after": [60.0, 600.0],
        "preempted_for": [30.0, 90.0],
        "unusable_rate": 0.01,
        "unusable_after": [60.0, 600.0],
        "start_task_failure_rate": 0.01,
        "allocation_failure_rate": 0.01,
        "node_loss_rate": 0.001,
    },
}


def _seconds(key: str, value: Any) -> Seconds:
    pair = value if isinstance(value, list | tuple) else [value, value]
    if len(pair) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pair):
        raise WeatherError(f"weather: {key} must be a number of seconds or [low, high]")
    low, high = float(pair[0]), float(pair[1])
    if not 0 <= low <= high <= MAX_SECONDS:
        raise WeatherError(f"weather: {key} must satisfy 0 <= low <= high <= {MAX_SECONDS:g} seconds")
    return (low, high)


def _number(key: str, value: Any, low: float, high: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise WeatherError(f"weather: {key} must be a number between {low:g} and {high:g}")
    return float(value)


def _integer(key: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise WeatherError(f"weather: {key} must be an integer between {low} and {high}")
    return value


def from_mapping(data: Any) -> Weather:
    """Validate a mapping of settings (unknown keys refused) into a :class:`Weather`."""
    if not isinstance(data, dict):
        raise WeatherError("weather: the profile must be a table/object of settings")
    known = {f.name: f for f in fields(Weather)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise WeatherError(f"weather: unknown setting {str(key)[:64]!r} (known: {', '.join(known)})")
        kind = str(known[key].type)
        if key == "seed":
            values[key] = _integer(key, value, 0, 2**63 - 1)
        elif key == "throttle_status":
            if value not in THROTTLE_STATUSES:
                raise WeatherError("weather: throttle_status must be 429 or 503")
            values[key] = value
        elif key == "retry_after":
            values[key] = _integer(key, value, 0, MAX_RETRY_AFTER)
        elif key.endswith("_quota"):
            values[key] = None if value is None else _integer(key, value, 0, 100_000)
        elif kind == "Seconds":
            values[key] = _seconds(key, value)
        elif key == "task_counts_lag":
            values[key] = _number(key, value, 0, MAX_SECONDS)
        else:
            values[key] = _number(key, value, 0, 1)
    return Weather(**values)


def _parse_toml(text: str) -> Any:
    if sys.version_info < (3, 11):
        raise WeatherError("weather: TOML profiles need Python 3.11 or later; use a .json file")
    return importlib.import_module("tomllib").loads(text)


def load(spec: str | None, seed: int | None = None) -> Weather:
    """The profile named by ``spec`` (a preset name, a .json or .toml file; None = calm)."""
    if not spec:
        data: dict[str, Any] = {}
    elif spec in PRESETS:
        data = dict(PRESETS[spec])
    else:
        path = Path(spec)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise WeatherError(
                f"weather: cannot read {spec!r} ({exc.strerror}); give a .json/.toml file "
                f"or a preset ({', '.join(PRESETS)})"
            ) from None
        try:
            data = _parse_toml(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
            raise WeatherError(f"weather: {spec!r} is not valid {path.suffix or 'JSON'}: {exc}") from None
    if seed is not None:
        if not isinstance(data, dict):
            raise WeatherError("weather: the profile must be a table/object of settings")
        data = {**data, "seed": seed}
    return from_mapping(data)
