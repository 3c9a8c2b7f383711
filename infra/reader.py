"""Typed reads of the stack configuration, with errors that name the full key.

:class:`ConfigReader` wraps one ``pulumi.Config`` bag; every failed check raises
:class:`InfraConfigError`, whose message starts with the full key
(``azbatch:nodeCount``) and says what is accepted. No resource is involved.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TypeVar

import pulumi

_T = TypeVar("_T")
_E = TypeVar("_E", bound="ConfigEnum")


class ConfigEnum(str, Enum):
    """An enum whose values are the configuration's spelling."""


class InfraConfigError(pulumi.RunError):
    """A configuration value is ill-typed, out of range or not one of the allowed values.

    ``key`` is the full configuration key (``azbatch:nodeCount``); the message
    starts with it and says which values are allowed.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class ConfigReader:
    """Typed access to one configuration bag that reports errors by full key."""

    def __init__(self, config: pulumi.Config) -> None:
        self._config = config

    def key(self, name: str) -> str:
        """The full key of ``name`` (``azbatch:<name>``)."""
        return self._config.full_key(name)

    def error(self, name: str, message: str) -> InfraConfigError:
        """The error to raise for ``name``: its full key, then ``message``."""
        return InfraConfigError(self.key(name), message)

    def is_set(self, name: str, default: object = None) -> bool:
        """True when the stack gives ``name`` a non-blank value other than ``default``.

        The engine hands the defaults declared in ``Pulumi.yaml`` to the program like
        set values, so a key with a default counts as set only when it differs.
        """
        value = self._config.get(name)
        if value is None or not value.strip():
            return False
        return default is None or value.strip() != str(default)

    def _typed(self, name: str, read: Callable[[str], _T | None], kind: str) -> _T | None:
        try:
            return read(name)
        except pulumi.ConfigTypeError:
            raise self.error(name, f"must be {kind}, got {self._config.get(name)!r}") from None

    def string(self, name: str, default: str) -> str:
        value = self._config.get(name)
        if value is None:
            return default
        value = value.strip()
        if not value:
            raise self.error(name, "must not be empty")
        return value

    def optional_string(self, name: str) -> str | None:
        value = self._config.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def integer(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self._typed(name, self._config.get_int, "an integer")
        result = default if value is None else value
        if result < minimum or (maximum is not None and result > maximum):
            allowed = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise self.error(name, f"must be an integer {allowed}, got {result}")
        return result

    def choice(self, name: str, kind: type[_E], default: _E) -> _E:
        value = self.string(name, default.value)
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise self.error(name, f"must be one of {allowed}, got {value!r}") from None

    def boolean(self, name: str, default: bool) -> bool:
        value = self._typed(name, self._config.get_bool, "true or false")
        return default if value is None else value
