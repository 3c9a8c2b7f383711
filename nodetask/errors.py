"""Errors of nodetask; each one becomes one line on stderr and an exit code."""

from __future__ import annotations

#: Exit code for bad input (missing/unreadable file, directory, N < 1, bad counts file).
EXIT_BAD_INPUT = 2
#: Exit code when an output file cannot be written.
EXIT_OUTPUT_FAILED = 1


class NodeTaskError(Exception):
    """Base class; ``exit_code`` is what the process exits with."""

    exit_code: int = EXIT_BAD_INPUT


class InputError(NodeTaskError):
    """The input (file, directory, argument or counts file) cannot be used."""

    exit_code = EXIT_BAD_INPUT


class OutputError(NodeTaskError):
    """An output file could not be written."""

    exit_code = EXIT_OUTPUT_FAILED
