"""The ``runner`` command line (Typer). Commands are thin; the work is in the modules.

* stdout carries results only (``--json`` documents, ``logs`` content);
  everything for people goes to one ``rich`` console on stderr.
* One place (:func:`_handle_errors`) turns a :class:`RunnerError` into one
  line on stderr and its exit code, and Ctrl-C into exit 130 plus the
  command that resumes the job.
* Tracebacks never show locals (they could hold keys or SAS URLs).
"""

from __future__ import annotations

import functools
import gc
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from runner import __version__
from runner.cache_cmd import make_cache_app
from runner.cli_help import EXAMPLES, TableMode
from runner.cli_style import Command, Group
from runner.errors import RunnerError, StartTaskFailed, TaskFailures
from runner.home import runner_home
from runner.interrupt import EXIT_INTERRUPTED, InterruptGuard, resume_command
from runner.packing import pack_help
from runner.targets import AuthMode, Session, Target, TargetKind, load_outputs, resolve
from runner.tasks import MAX_MERGE_GROUP_SIZE, MERGE_GROUP_SIZE
from runner.text import EscapeFilter, safe, safe_lines, shorten_middle

if TYPE_CHECKING:
    from runner.progress import ConsoleReporter
    from runner.results import JobResults

log = logging.getLogger(__name__)

app = typer.Typer(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    name="runner",
    help="Run per-file work (the Azure Batch word-count tutorial, or any command) on Azure Batch "
    "or on the local target (Azurite + localbatch).",
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    add_completion=False,
    epilog=f"The local target's state is kept in {runner_home()} (set RUNNER_HOME to move it).",
)
local_app = typer.Typer(
    cls=Group, help="The local target: Azurite + localbatch on this machine.", no_args_is_help=True
)
app.add_typer(local_app, name="local")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    """Global options and the one console of one invocation: Typer's context object
    (``ctx.obj``), made by the callback; commands read it with :func:`_state`."""

    target: str | None = None
    outputs: Path | None = None
    auth: AuthMode = AuthMode.SHAREDKEY
    json: bool = False
    verbose: int = 0
    quiet: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    resume_job_id: str | None = None
    table: TableMode = TableMode.AUTO
    interrupt_reported: bool = False
    _announced: bool = False

    def resolved_target(self) -> Target:
        target = resolve(self.target, self.outputs)
        if not self._announced:
            self._announced = True
            # A long outputs path loses its middle rather than wrap at narrow widths.
            self.say(shorten_middle(f"target: {target.describe()}", self.console.width))
        return target

    def session(self) -> Session:
        target = self.resolved_target()
        if target.kind is TargetKind.LOCAL:
            from runner import local

            started = local.ensure_up(first_auth=self.auth)
            if started.started:
                self.say(f"local target: started {', '.join(started.started)}")
            return Session(target, started.outputs, self.auth)
        return Session(target, load_outputs(target), self.auth)

    def say(self, message: str) -> None:
        """One line for people on stderr, escaped (it may name files); nothing when quiet."""
        if not self.quiet:
            self.console.print(safe(message), highlight=False, markup=False, soft_wrap=True)

    def reporter(self) -> ConsoleReporter:
        from runner.progress import ConsoleReporter

        return ConsoleReporter(self.console, quiet=self.quiet)


def _state(ctx: typer.Context) -> State:
    """The context object the callback made for this command (a fresh default one if none,
    e.g. a command invoked on its own in a test)."""
    if not isinstance(ctx.obj, State):
        ctx.obj = State()
    return ctx.obj


#: ``--table`` of ``submit`` and ``results``.
TableOption = Annotated[
    TableMode,
    typer.Option(
        "--table",
        help="auto: above 20 files, only the corpus row and the failures (every row is in "
        "DEST/summary.tsv); full: every file.",
    ),
]


def _handle_errors(fn: F) -> F:
    """The one place that maps errors to exit codes; every command takes ``ctx`` (by keyword,
    as Typer passes it), whose :class:`State` has the console the errors go to."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = _state(kwargs["ctx"])
        with InterruptGuard(functools.partial(_report_interrupt, state)):
            return _run_mapped(state, fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _run_mapped(state: State, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a command; a RunnerError becomes its line and exit code, Ctrl-C exit 130."""
    try:
        return fn(*args, **kwargs)
    except TaskFailures as err:
        _show_task_failures(state, err)
        raise typer.Exit(err.exit_code) from None
    except StartTaskFailed as err:
        _error_line(state, err)
        for node_id, tail in err.node_errors:
            state.console.print(Text(f"  node {safe(node_id)}:", style="red"))
            for line in safe_lines(tail.rstrip("\n"))[-10:]:
                state.console.print(Text("    " + line, style="dim"))
        raise typer.Exit(err.exit_code) from None
    except RunnerError as err:
        _error_line(state, err)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        _report_interrupt(state)
        raise typer.Exit(EXIT_INTERRUPTED) from None


_interrupt_lock = threading.Lock()


def _report_interrupt(state: State) -> None:
    """Say "interrupted" and how to resume, once (also when the exit is forced)."""
    with _interrupt_lock:
        if state.interrupt_reported:
            return
        state.interrupt_reported = True
    state.console.print(Text("interrupted", style="yellow"))
    if state.resume_job_id:
        state.console.print(
            safe(f"job {state.resume_job_id} is resumable: {resume_command(state.resume_job_id)}"),
            highlight=False,
            markup=False,
            soft_wrap=True,  # one line, so it can be copied from any terminal or log
        )


def _error_line(state: State, err: RunnerError) -> None:
    """The one ``error: …`` line (escaped: messages name files and echo service text)."""
    state.console.print(Text(f"error: {safe(err)}", style="bold red"), soft_wrap=True)


def batch_job_id(session: Session, job: str) -> str:
    """``job`` as Batch stored it, or as given when there is no such job.

    Batch ids are case-preserving and case-insensitive (``CaseJob`` is ``casejob``);
    every blob prefix and manifest lookup uses the stored form, so a command typed
    in another case reaches the same job and all of its blobs.
    """
    from runner.errors import NotFoundError

    try:
        return session.batch.get_job(job).id
    except NotFoundError:
        return job


def _show_task_failures(state: State, err: TaskFailures) -> None:
    from runner.results import JobResults

    result = err.result
    if isinstance(result, JobResults):
        show_results(state, result)
    # After a summary that fits the screen, the hint goes below the error, wrapped to the width.
    state.console.print(Text(f"error: {safe(err.message)}", style="bold red"), soft_wrap=True)
    if err.hint:
        state.console.print(Text(safe(err.hint), style="red"), highlight=False)


def show_results(state: State, outcome: JobResults) -> None:
    """The results of a job, also with ``--quiet``: ``summary.tsv`` written, the summary on
    stderr, the JSON document on stdout with ``--json``."""
    from runner import report

    try:
        report.write_summary(outcome)
    except OSError as exc:
        log.warning("could not write %s: %s", outcome.dest / report.SUMMARY_FILE, exc.strerror or exc)
    report.print_summary(state.console, outcome, full=state.table is TableMode.FULL)
    if state.json:
        typer.echo(report.dumps(outcome.to_json()))


def _setup_logging(state: State, verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    handler = RichHandler(console=state.console, show_time=False, show_path=False, markup=False)
    handler.addFilter(EscapeFilter())
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    # The SDKs log request URLs (SAS) and headers at INFO, and tracebacks of harmless body-less
    # error responses (HEAD) at WARNING: errors reach the user through RunnerError instead.
    logging.getLogger("azure").setLevel(logging.ERROR)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            envvar="RUNNER_STACK",
            help="`local` (default) or the name of a Pulumi stack.",
            show_envvar=True,
        ),
    ] = None,
    outputs: Annotated[
        Path | None,
        typer.Option(
            "--outputs",
            envvar="RUNNER_OUTPUTS",
            help="JSON file with the outputs contract (instead of Pulumi or the local target).",
            show_envvar=True,
        ),
    ] = None,
    auth: Annotated[
        AuthMode, typer.Option("--auth", help="sharedkey (keys from the outputs) or entra (Azure identity).")
    ] = AuthMode.SHAREDKEY,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print machine-readable results on stdout (nothing else there).")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv: debug).")
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress or notes: only errors and results (the summary, --json on stdout).",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    state = State(target=target, outputs=outputs, auth=auth, json=json_out, verbose=verbose, quiet=quiet)
    ctx.obj = state
    _setup_logging(state, verbose, quiet)


@app.command(cls=Command, epilog=EXAMPLES["submit"])
@_handle_errors
def submit(
    ctx: typer.Context,
    paths: Annotated[
        list[str], typer.Argument(help="Files, directories (recursive) and globs.", metavar="PATHS...")
    ],
    numwords: Annotated[int, typer.Option("--numwords", "-n", help="How many top words to report.")] = 3,
    job_id: Annotated[
        str | None,
        typer.Option("--job-id", help="Job id (default: generated). An existing job's id resumes it."),
    ] = None,
    aggregate: Annotated[
        bool,
        typer.Option(
            "--aggregate/--no-aggregate",
            help="Also compute the corpus-wide top words (skipped, and reported so, if a file fails; "
            "see --allow-failures).",
        ),
    ] = True,
    dest: Annotated[
        Path | None, typer.Option("--dest", help="Where results go (default: results/<job-id>/).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the tasks and download results.")
    ] = True,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds to wait for the tasks (at most 30 days). The SAS URLs the tasks use expire "
            "--timeout + 1 h after submission: a task must finish by then (its inputs and outputs "
            "move with them).",
        ),
    ] = 7200.0,
    retries: Annotated[
        int, typer.Option("--retries", help="Retries per failed task, 0-100 (Batch's maxTaskRetryCount).")
    ] = 0,
    max_wall_clock: Annotated[
        float | None,
        typer.Option("--max-wall-clock", help="Seconds a task may run, at most 30 days (maxWallClockTime)."),
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(
            "--command",
            help="Run this per input instead of nodetask, under /bin/sh -c in the task's directory; "
            "placeholders {input} and {output_dir} (node paths, shell-quoted). Everything written "
            "to {output_dir} comes back to DEST/files/<input>.out/. On the local target tasks run "
            "as you, with your privileges: run only commands you trust.",
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep/--cleanup",
            help="Keep the job and its blobs, or delete them once the results are downloaded "
            "(kept anyway when a task failed, to read its logs).",
        ),
    ] = True,
    merge_group_size: Annotated[
        int,
        typer.Option(
            "--merge-group-size",
            help="At most this many files per merge task (a pack's results tar counts as one); "
            "larger jobs merge in two levels "
            f"(2-{MAX_MERGE_GROUP_SIZE}).",
        ),
    ] = MERGE_GROUP_SIZE,
    pack: Annotated[str | None, typer.Option("--pack", help=pack_help(), metavar="auto|none|N")] = None,
    with_report: Annotated[
        bool,
        typer.Option(
            "--report", help="When the job ends, write its execution report (report.html in the results)."
        ),
    ] = False,
    table: TableOption = TableMode.AUTO,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache",
            envvar="RUNNER_CACHE",
            help="Reuse the results of unchanged files from earlier jobs on this target, and keep "
            "this run's for later ones (key: content, node code or --command, --numwords). "
            "--no-cache runs every file and neither reads nor writes the cache.",
        ),
    ] = True,
    allow_failures: Annotated[
        bool,
        typer.Option(
            "--allow-failures",
            help="Merge the corpus from the files that succeeded (the summary names those missing "
            "and why); the exit code still says that tasks failed. Kept on resume.",
        ),
    ] = False,
) -> None:
    """Upload inputs, run tasks (small files packed: --pack) and the aggregate, show progress, get results."""
    state = _state(ctx)
    from runner import checks, report, submit_lock
    from runner import dest as dest_mod
    from runner import inputs as inputs_mod

    state.table = table
    from runner.submit import (
        SubmitOptions,
        Submitted,
        check_sas_lifetime,
        default_dest,
        new_job_id,
        validate_job_id,
    )
    from runner.submit import submit as do_submit

    if command is not None:
        checks.command_words(command)
    opts = SubmitOptions(
        numwords=numwords,
        aggregate=aggregate,
        dest=dest,
        wait=wait,
        timeout=checks.seconds("--timeout", timeout) or timedelta(0),
        retries=checks.retries(retries),
        max_wall_clock=checks.seconds("--max-wall-clock", max_wall_clock),
        command=command,
        keep=keep,
        merge_group_size=merge_group_size,
        cache=cache,
        allow_failures=allow_failures,
        pack=pack,
    )
    opts.validate()
    check_sas_lifetime(opts.timeout, state.auth)
    if job_id is not None:
        validate_job_id(job_id)
    job = job_id or new_job_id()
    state.resolved_target()  # say which target first; nothing is started yet
    files = inputs_mod.expand(paths)  # exit 2 before anything is created
    checks.names(files, job, command_mode=command is not None)
    session = state.session()
    if job_id is not None:
        job = batch_job_id(session, job)
    with submit_lock.hold(session.storage, session.outputs.input_container, job, "submit"):
        claim = dest_mod.claim(dest or default_dest(job), job)
        try:
            state.resume_job_id = job
            state.say(f"job {job}: {len(files)} input file(s)")
            try:
                outcome = do_submit(session, files, opts, job, state.reporter())
            except TaskFailures:
                if with_report:
                    _write_report(state, session, job, dest)
                raise
        finally:
            claim.release()
    if isinstance(outcome, Submitted):
        # The job id is this command's result: shown with --quiet too.
        follow = f"follow with `runner status {job}`, then `runner results {job}`"
        state.console.print(Text(safe(f"job {job} submitted; {follow}")), soft_wrap=True)
        if state.json:
            typer.echo(report.dumps(report.submitted_json(job, session.target.label, outcome.tasks_added)))
        return
    show_results(state, outcome)
    if with_report:
        _write_report(state, session, job, dest)  # last: its path is the run's final line


def _write_report(state: State, session: Session, job: str, dest: Path | None) -> None:
    from runner import report_page
    from runner.report_cmd import make_report
    from runner.submit import default_dest

    made = make_report(session, job, out=report_page.default_path(job, dest or default_dest(job)))
    state.say(f"report: {made.html}")


@app.command(cls=Command, epilog=EXAMPLES["report"])
@_handle_errors
def report(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where the HTML report goes (default: results/JOB/report.html)."),
    ] = None,
    trace_file: Annotated[
        Path | None, typer.Option("--trace", help="Also write a per-task trace (TSV), like Nextflow's.")
    ] = None,
    price: Annotated[
        float | None,
        typer.Option("--price", help="US$ per node-hour for the cost estimate (default: a dated table)."),
    ] = None,
) -> None:
    """Write a job's execution report: one offline HTML file with a timeline, charts and failures."""
    state = _state(ctx)
    from runner import report as report_mod
    from runner.report_cmd import make_report

    session = state.session()
    job = batch_job_id(session, job)
    made = make_report(session, job, out=output, trace_path=trace_file, price=price)
    state.say(f"report: {made.html}" + (f"; trace: {made.trace}" if made.trace else ""))
    if state.json:
        typer.echo(report_mod.dumps(made.to_json()))
    else:
        typer.echo(str(made.html))


@app.command(cls=Command, epilog=EXAMPLES["status"])
@_handle_errors
def status(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Argument(help="A job id; all jobs when omitted.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="List only the tasks that failed.")] = False,
) -> None:
    """Pool and task counts of a job, then per task its node, start, end, run time, retries."""
    state = _state(ctx)
    from runner import job_views
    from runner import report as report_mod
    from runner.execution import gather
    from runner.progress import describe_counts

    session = state.session()
    if job is None:
        _print_jobs(state, session)
        return
    job = batch_job_id(session, job)
    ex = gather(session, job, stderr_tails=False)
    counts = session.batch.task_counts(job)
    tasks = [t for t in ex.tasks if t.failed] if failed else list(ex.tasks)
    for line in job_views.pool_line(ex.pool, ex.nodes).splitlines():
        state.say(line)
    title = f"job {job} ({ex.job.state})" + (f": {len(tasks)} failed task(s)" if failed else "")
    if ex.tasks:
        state.console.print(job_views.task_table(title, tasks, state.console.width))
    else:
        state.say(f"{title}: no Batch task (every result came from the result cache)")
    if ex.packed or any(f.status == "cached" for f in ex.files):
        files = [f for f in ex.files if f.status == "failed" or not failed]
        state.console.print(job_views.file_table(f"files of job {job}", files))
        for line in job_views.file_errors(files):
            state.say(line)
    for line in ex.pack_notes:
        state.say(line)
    if ex.tasks:
        state.say(job_views.times_note(tasks))
        state.say(describe_counts(counts, counts.total))
    else:
        cached = sum(1 for f in ex.files if f.status == "cached")
        state.say(f"{cached:,} of {len(ex.files):,} file(s) from the result cache")
    if state.json:
        typer.echo(report_mod.dumps(job_views.status_json(ex, counts, tasks)))


def _print_jobs(state: State, session: Session) -> None:
    from datetime import datetime, timezone

    from runner import job_views
    from runner import report as report_mod
    from runner.errors import NotFoundError

    jobs = sorted(
        session.batch.list_jobs(), key=lambda j: (j.creation_time is None, j.creation_time), reverse=True
    )
    lines = []
    for j in jobs:
        try:
            counts = session.batch.task_counts(j.id)
        except NotFoundError:  # deleted meanwhile
            counts = None
        lines.append(job_views.JobLine(j, counts))
    now = datetime.now(timezone.utc)
    state.console.print(job_views.jobs_table(lines, now, state.console.width))
    if any(line.retryable != "-" for line in lines) and not state.quiet:
        state.console.print(Text(job_views.RETRY_NOTE), highlight=False)  # prose: wrapped to the width
    if state.json:
        typer.echo(report_mod.dumps([line.to_json(now) for line in lines]))


@app.command(cls=Command, epilog=EXAMPLES["jobs"])
@_handle_errors
def jobs(ctx: typer.Context) -> None:
    """List the jobs of the target."""
    state = _state(ctx)
    _print_jobs(state, state.session())


@app.command(cls=Command, epilog=EXAMPLES["logs"])
@_handle_errors
def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    task: Annotated[str, typer.Argument(help="Task id (1..N, merge, or merge-K for a partial merge).")],
    stderr: Annotated[bool, typer.Option("--stderr", help="Show stderr.txt instead of stdout.txt.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream the file as it grows, until the task ends.")
    ] = False,
) -> None:
    """Print a task's stdout (or stderr) to stdout."""
    state = _state(ctx)
    from runner import job_views
    from runner.batch_types import STDERR_FILE, STDOUT_FILE

    session = state.session()
    job = batch_job_id(session, job)
    name = STDERR_FILE if stderr else STDOUT_FILE
    to_person = sys.stdout.isatty()  # a person reads it: escape; a pipe or file gets the bytes

    def write(data: bytes) -> None:
        if to_person:
            sys.stdout.write(safe(data.decode("utf-8", errors="replace")).replace("\\n", "\n"))
        else:
            sys.stdout.buffer.write(data)
        sys.stdout.flush()

    if follow:
        written = job_views.follow(session.batch, job, task, name, write)
    else:
        data = session.batch.task_file(job, task, name)
        write(data)
        written = len(data)
    if written == 0 and not stderr:
        size = session.batch.task_file_size(job, task, STDERR_FILE) or 0
        state.say(
            f"task {task} wrote nothing to stdout"
            + (f"; its stderr has {size} byte(s): runner logs {job} {task} --stderr" if size else "")
        )


@app.command(cls=Command, epilog=EXAMPLES["results"])
@_handle_errors
def results(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    dest: Annotated[
        Path | None, typer.Option("--dest", help="Where results go (default: results/<job-id>/).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait for a job still running (else: exit 12)."),
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")] = 7200.0,
    table: TableOption = TableMode.AUTO,
) -> None:
    """Download a job's results (from any machine) and print the summary."""
    state = _state(ctx)
    from runner import dest as dest_mod
    from runner import manifest as mf
    from runner.submit import SubmitOptions, check_dest, default_dest
    from runner.submit import results as do_results

    state.table = table
    opts = SubmitOptions(dest=dest, wait=wait, timeout=timedelta(seconds=timeout))
    opts.validate()
    check_dest(dest or default_dest(job))
    session = state.session()
    job = batch_job_id(session, job)
    claim = dest_mod.claim(dest or default_dest(job), job)
    try:
        man = mf.require(session.storage, session.outputs.input_container, job)
        outcome = do_results(session, man, opts, state.reporter())
    finally:
        claim.release()
    show_results(state, outcome)


@app.command(cls=Command, epilog=EXAMPLES["retry"])
@_handle_errors
def retry(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    dest: Annotated[
        Path | None, typer.Option("--dest", help="Where results go (default: results/<job-id>/).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the tasks.")] = 7200.0,
    keep: Annotated[
        bool,
        typer.Option("--keep/--cleanup", help="Delete the job and its blobs if all succeeded."),
    ] = True,
) -> None:
    """Run a job's failed tasks again (and the merge they blocked), wait, download the results."""
    state = _state(ctx)
    from runner import checks, submit_lock
    from runner import dest as dest_mod
    from runner.retry import retry as do_retry
    from runner.submit import SubmitOptions, default_dest

    opts = SubmitOptions(dest=dest, timeout=checks.seconds("--timeout", timeout) or timedelta(0), keep=keep)
    opts.validate()
    session = state.session()
    job = batch_job_id(session, job)
    state.resume_job_id = None
    with submit_lock.hold(session.storage, session.outputs.input_container, job, "retry"):
        claim = dest_mod.claim(dest or default_dest(job), job)
        try:
            outcome = do_retry(session, job, opts, state.reporter())
        finally:
            claim.release()
    show_results(state, outcome)


@app.command(cls=Command, epilog=EXAMPLES["cancel"])
@_handle_errors
def cancel(ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Terminate a job: running tasks are stopped, waiting tasks never start."""
    state = _state(ctx)
    session = state.session()
    job = batch_job_id(session, job)
    session.batch.terminate_job(job)
    state.say(f"job {job} terminated")


@app.command(cls=Command, epilog=EXAMPLES["clean"])
@_handle_errors
def clean(ctx: typer.Context, job: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Delete a job and all its blobs (inputs, outputs, manifest)."""
    state = _state(ctx)
    from runner import report
    from runner.submit import cleanup

    session = state.session()
    job = batch_job_id(session, job)
    deleted, blobs = cleanup(session, job)
    state.say(f"job {job}: {'deleted' if deleted else 'did not exist'}; {blobs} blob(s) deleted")
    if state.json:
        typer.echo(report.dumps(report.clean_json(job, deleted, blobs)))


@app.command("outputs", cls=Command, epilog=EXAMPLES["outputs"])
@_handle_errors
def outputs_cmd(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="As JSON on stdout.")] = False,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Show keys instead of masking them.")
    ] = False,
) -> None:
    """Print the resolved outputs of the target (secrets masked)."""
    state = _state(ctx)
    from runner import report

    target = state.resolved_target()
    out = load_outputs(target, start_local=False)
    if json_out or state.json:
        typer.echo(report.dumps(out.to_dict(show_secrets=show_secrets)))
    else:
        typer.echo("\n".join(safe_lines(out.render(show_secrets=show_secrets))))


@local_app.command("up", cls=Command)
@_handle_errors
def local_up(
    ctx: typer.Context,
    auth: Annotated[
        AuthMode | None,
        typer.Option(
            "--auth",
            help="sharedkey, or entra: HTTPS with a local CA, Entra ID tokens from a local identity, "
            "no keys in the outputs (default: the mode it last ran in, else sharedkey).",
        ),
    ] = None,
    weather: Annotated[
        str | None,
        typer.Option(
            "--weather",
            help="make localbatch behave like Azure on a bad day: azure-like, or a .json/.toml profile "
            "(see localbatch/README.md); localbatch is restarted if it runs with other weather.",
        ),
    ] = None,
    weather_seed: Annotated[
        int | None, typer.Option("--weather-seed", help="seed of the weather's decisions (replays a run)")
    ] = None,
) -> None:
    """Start Azurite and localbatch (if needed), create containers and the pool, write the outputs."""
    state = _state(ctx)
    from runner import local

    lt = local.ensure_up(
        auth=auth or (state.auth if state.auth is AuthMode.ENTRA else None),
        weather=local.weather_args(weather, weather_seed),
    )
    what = ", ".join(lt.started) if lt.started else "nothing (already running)"
    state.say(f"local target up; started: {what}; outputs in {local.outputs_path()}")
    _print_local_status(state)


@local_app.command("down", cls=Command)
@_handle_errors
def local_down(ctx: typer.Context) -> None:
    """Stop the services `runner local up` started (their data is kept)."""
    state = _state(ctx)
    from runner import local

    stopped = local.down()
    state.say(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@local_app.command("status", cls=Command)
@_handle_errors
def local_status(ctx: typer.Context) -> None:
    """Report the local services."""
    state = _state(ctx)
    _print_local_status(state)


def _print_local_status(state: State) -> None:
    from runner import local, report

    st = local.status()
    table = Table(title=f"local target ({st.home})", title_justify="left")
    for col in ("service", "state", "pid", "url"):
        table.add_column(col)
    for s in st.services:
        table.add_row(s.name, s.state.value, str(s.pid or ""), s.url or "")
    state.console.print(table)
    if state.json:
        typer.echo(report.dumps(report.local_status_json(st)))


app.add_typer(make_cache_app(_handle_errors, _state), name="cache")


def main() -> None:
    """Console script entry point."""
    try:
        app()
    finally:
        # At exit the interpreter would collect every object the SDKs made: 0.1-0.5 s of a
        # run on a busy 2-core machine (bench/timeline_e2e.py). Frozen, the process's end frees them.
        gc.freeze()
