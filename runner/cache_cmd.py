"""``runner cache stats`` and ``runner cache prune``: the result cache's commands (thin; the work is
in :mod:`runner.cache`).

``runner clean JOB`` never deletes cache entries (other jobs may reuse them); these commands
are the only way they go. Built by :func:`make_cache_app` from the CLI's error handler and
state, so this module does not import :mod:`runner.cli` (which registers it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runner.cli_style import Command, Group

if TYPE_CHECKING:
    from runner.cli import State

Handler = Callable[..., Any]

_STATS_EXAMPLES = "Examples:\n  runner cache stats\n  runner cache stats --json"
_PRUNE_EXAMPLES = "Examples:\n  runner cache prune --older-than 30d\n  runner cache prune --older-than 1d12h"


def human_bytes(n: int) -> str:
    """``1.5 MB``-style sizes (powers of 1,000, as Azure's pricing counts them)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def make_cache_app(
    handle_errors: Callable[[Handler], Handler], state: Callable[[typer.Context], State]
) -> typer.Typer:
    """The ``cache`` sub-app; ``handle_errors`` maps errors to exit codes, ``state(ctx)`` the CLI's state."""
    cache_app = typer.Typer(
        cls=Group,
        help="The result cache: per-file results reused across jobs on the same target "
        "(entries under cache/ in the output container).",
        no_args_is_help=True,
    )

    @cache_app.command("stats", cls=Command, epilog=_STATS_EXAMPLES)
    @handle_errors
    def stats(ctx: typer.Context) -> None:
        """How many entries the cache holds, their size and the oldest (one listing)."""
        from runner import cache, report

        st = state(ctx)
        session = st.session()
        found = cache.stats(session.storage, session.outputs.output_container)
        oldest = found.oldest.isoformat(timespec="seconds") if found.oldest else None
        corrupt = f"; {found.corrupt:,} corrupt (they are recomputed)" if found.corrupt else ""
        st.console.print(
            f"cache: {found.entries:,} entries, {human_bytes(found.bytes)} in {found.blobs:,} blob(s), "
            f"oldest {oldest or '-'}{corrupt}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        if st.json:
            doc = {
                "entries": found.entries,
                "corrupt": found.corrupt,
                "blobs": found.blobs,
                "bytes": found.bytes,
                "oldest": oldest,
            }
            typer.echo(report.dumps(doc))

    @cache_app.command("prune", cls=Command, epilog=_PRUNE_EXAMPLES)
    @handle_errors
    def prune(
        ctx: typer.Context,
        older_than: Annotated[
            str,
            typer.Option(
                "--older-than",
                help="Delete the entries written longer ago than this: a number and a unit, "
                "w d h m s (30d, 12h, 1d12h).",
            ),
        ],
    ) -> None:
        """Delete cache entries older than --older-than (corrupt ones too); jobs are not touched."""
        from runner import cache, report

        age = cache.parse_duration(older_than, "--older-than")  # exit 2 before anything is reached
        st = state(ctx)
        session = st.session()
        now = datetime.now(timezone.utc)
        done = cache.prune(session.storage, session.outputs.output_container, age, now)
        cutoff = (now - age).isoformat(timespec="seconds")
        st.say(
            f"cache: {done.entries:,} entries written before {cutoff} deleted "
            f"({done.blobs:,} blob(s), {human_bytes(done.bytes)})"
        )
        if st.json:
            typer.echo(report.dumps({"entries": done.entries, "blobs": done.blobs, "bytes": done.bytes}))

    return cache_app
