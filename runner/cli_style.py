"""How the command line reads: global options anywhere, help without type noise.

* :class:`Group` (the root ``runner`` group) accepts its own options after the
  command too (``runner submit … --json``, ``runner jobs -q``, ``runner
  status JOB --target dev``): :func:`hoist` moves them in front of the
  command before parsing. A command's own option of the same name wins
  (``runner outputs --json``), values of a command's options are never
  touched (``--command "-q"``), nor is anything after ``--``.
* Flags, counters and ``--help`` show no ``<bool>``/``<int>`` metavar in help
  (:class:`Command` and :class:`Group` blank them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from typer.core import TyperCommand, TyperGroup, TyperOption

_COUNT_CLUSTER = re.compile(r"^-([a-zA-Z])\1+$")  # -vv, -vvv


def _quiet_metavars(params: Iterable[Any]) -> None:
    for param in params:
        if isinstance(param, TyperOption) and (param.is_flag or param.count) and param.metavar is None:
            param.metavar = ""


def _takes_value(params: Iterable[Any]) -> dict[str, bool]:
    """Option string -> whether it takes a value, for every option of ``params``."""
    table: dict[str, bool] = {}
    for param in params:
        if not isinstance(param, TyperOption):
            continue
        takes = not (param.is_flag or param.count)
        for name in (*param.opts, *param.secondary_opts):
            table[name] = takes
    return table


def _name(token: str) -> str:
    return token.split("=", 1)[0] if token.startswith("--") else token


def _width(token: str, takes: bool) -> int:
    """How many tokens an option occupies: itself, and its value unless given as ``--x=v``."""
    return 2 if takes and "=" not in token else 1


def hoist(group: TyperGroup, ctx: Any, args: list[str]) -> list[str]:
    """``args`` with the group's options found after the command moved before it."""
    mine = _takes_value(group.params)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += _width(args[i], mine.get(_name(args[i]), False))
    if i >= len(args) or args[i] == "--":
        return args
    command = group.get_command(ctx, args[i])
    if command is None:
        return args
    theirs = _takes_value(command.params)
    moved: list[str] = []
    kept: list[str] = []
    rest = args[i + 1 :]
    j = 0
    while j < len(rest):
        token = rest[j]
        name = _name(token)
        if token == "--":
            kept += rest[j:]
            break
        if name in theirs:
            n = _width(token, theirs[name])
            kept += rest[j : j + n]
        elif name in mine or (_COUNT_CLUSTER.match(token) and f"-{token[1]}" in mine):
            n = _width(token, mine.get(name, False))
            moved += rest[j : j + n]
        else:
            n = 1
            kept.append(token)
            sub = command.get_command(ctx, token) if isinstance(command, TyperGroup) else None
            if sub is not None:  # `runner local up --json`: the subcommand's options are theirs
                theirs.update(_takes_value(sub.params))
        j += n
    return [*args[:i], *moved, args[i], *kept]


_BRACED = re.compile(r"^\{(?P<name>[^{}]+)\}(?P<more>\.\.\.)?$")
_BRACKETED = re.compile(r"^\[(?P<name>[^\[\]]+)\](?P<more>\.\.\.)?$")


def usage_piece(piece: str) -> str:
    """``{paths}...`` -> ``PATHS...``, ``[job]`` -> ``[JOB]`` (Typer braces required arguments)."""
    for pattern, wrap in ((_BRACED, "{}"), (_BRACKETED, "[{}]")):
        match = pattern.match(piece)
        if match:
            name = match["name"].upper()
            if match["more"] and not name.endswith("..."):
                name += "..."
            return wrap.format(name)
    return piece


class Command(TyperCommand):
    """A command whose help shows no metavar for flags (``--wait/--no-wait``, ``--help``) and
    plain argument names in its usage line (``runner logs [OPTIONS] JOB TASK``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _quiet_metavars(self.params)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [usage_piece(p) for p in super().collect_usage_pieces(ctx)]

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _quiet_metavars([option])
        return option


class Group(TyperGroup):
    """The root group: global options accepted after the command (:func:`hoist`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _quiet_metavars(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _quiet_metavars([option])
        return option

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist(self, ctx, list(args)))
