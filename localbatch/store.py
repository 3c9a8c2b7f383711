"""SQLite state: pools, nodes and jobs as JSON documents, tasks as indexed rows.

One connection, used from the event-loop thread only, in WAL mode with
``synchronous=NORMAL``: every statement is short, so the loop never waits
long, and a crash loses nothing that was acknowledged (WAL survives SIGKILL).

Pools, jobs and nodes are few: the service keeps them in memory and writes
the whole document on change. Tasks can be hundreds of thousands: they live
only here; a task row holds the task as added (``spec``) plus the columns
that change while it runs and that lists filter on.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (key TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, pool_key TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobschedules (key TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    key TEXT NOT NULL,
    task_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    state_time TEXT NOT NULL,
    prev_state TEXT,
    prev_state_time TEXT,
    creation_time TEXT NOT NULL,
    etag TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    blocked INTEGER NOT NULL DEFAULT 0,
    slots INTEGER NOT NULL DEFAULT 1,
    node_id TEXT,
    start_time TEXT,
    end_time TEXT,
    exit_code INTEGER,
    result TEXT,
    failure TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    requeue_count INTEGER NOT NULL DEFAULT 0,
    last_retry_time TEXT,
    last_requeue_time TEXT,
    dep_ok INTEGER NOT NULL DEFAULT 0,
    pgid INTEGER,
    UNIQUE (job, key)
);
-- The instances of multi-instance tasks (localbatch/multiinstance.py), by the task's seq (never
-- reused, so a deleted task's rows are never shown for a new task of the same id): index 0 is the
-- primary (its coordination command's process group only), 1 .. N-1 the subtasks as listed.
CREATE TABLE IF NOT EXISTS subtasks (
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    job TEXT NOT NULL,
    doc TEXT NOT NULL,
    pgid INTEGER,
    marker TEXT NOT NULL,
    PRIMARY KEY (seq, idx)
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (job, state, blocked, seq);
CREATE INDEX IF NOT EXISTS tasks_active ON tasks (state, blocked, seq);
-- Task counts per (job, state, result), kept by triggers on every write to tasks, so
-- that GET .../taskcounts reads a handful of rows however many tasks a job has.
CREATE TABLE IF NOT EXISTS task_counts (
    job TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT NOT NULL,
    n INTEGER NOT NULL,
    slots INTEGER NOT NULL,
    PRIMARY KEY (job, state, result)
);
CREATE TRIGGER IF NOT EXISTS task_counts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_counts (job, state, result, n, slots)
    VALUES (NEW.job, NEW.state, coalesce(NEW.result, ''), 1, NEW.slots)
    ON CONFLICT (job, state, result) DO UPDATE SET n = n + 1, slots = slots + excluded.slots;
END;
CREATE TRIGGER IF NOT EXISTS task_counts_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1, slots = slots - OLD.slots
    WHERE job = OLD.job AND state = OLD.state AND result = coalesce(OLD.result, '');
END;
CREATE TRIGGER IF NOT EXISTS task_counts_update AFTER UPDATE OF state, result, slots ON tasks
WHEN OLD.state IS NOT NEW.state OR OLD.result IS NOT NEW.result OR OLD.slots IS NOT NEW.slots BEGIN
    UPDATE task_counts SET n = n - 1, slots = slots - OLD.slots
    WHERE job = OLD.job AND state = OLD.state AND result = coalesce(OLD.result, '');
    INSERT INTO task_counts (job, state, result, n, slots)
    VALUES (NEW.job, NEW.state, coalesce(NEW.result, ''), 1, NEW.slots)
    ON CONFLICT (job, state, result) DO UPDATE SET n = n + 1, slots = slots + excluded.slots;
END;
"""

# Rebuilt from the tasks at every start: state written by an older version (or by hand)
# can never leave the counts wrong.
_REBUILD_COUNTS = """
DELETE FROM task_counts;
INSERT INTO task_counts (job, state, result, n, slots)
SELECT job, state, coalesce(result, ''), count(*), sum(slots)
FROM tasks GROUP BY job, state, coalesce(result, '');
"""

TASK_COLUMNS = (
    "seq, job, key, task_id, spec, state, state_time, prev_state, prev_state_time, creation_time, etag, "
    "last_modified, blocked, slots, node_id, start_time, end_time, exit_code, result, failure, retry_count, "
    "requeue_count, last_retry_time, last_requeue_time, dep_ok, pgid"
)

# $filter property paths on tasks -> SQL expressions.
TASK_FILTER_COLUMNS = {
    "id": "task_id",
    "state": "state",
    "executionInfo/result": "result",
    "executionInfo/exitCode": "exit_code",
    "executionInfo/retryCount": "retry_count",
    "executionInfo/requeueCount": "requeue_count",
    "executionInfo/startTime": "start_time",
    "executionInfo/endTime": "end_time",
    "nodeInfo/nodeId": "node_id",
    "creationTime": "creation_time",
    "stateTransitionTime": "state_time",
    "displayName": "json_extract(spec, '$.displayName')",
    "commandLine": "json_extract(spec, '$.commandLine')",
}


# One instance of a multi-instance task as stored: (index, listed document, process group, marker).
SubtaskRow = tuple[int, dict[str, Any], int | None, str]


@dataclass
class TaskRow:
    """One task as stored (mutable columns included)."""

    seq: int
    job: str
    key: str
    task_id: str
    spec: str
    state: str
    state_time: str
    prev_state: str | None
    prev_state_time: str | None
    creation_time: str
    etag: str
    last_modified: str
    blocked: int
    slots: int
    node_id: str | None
    start_time: str | None
    end_time: str | None
    exit_code: int | None
    result: str | None
    failure: str | None
    retry_count: int
    requeue_count: int
    last_retry_time: str | None
    last_requeue_time: str | None
    dep_ok: int
    pgid: int | None

    def spec_json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.spec)
        return value


class Store:
    """The service's persistent state (see module docstring)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.execute("PRAGMA cache_size=-8000")
        self._db.executescript(SCHEMA)
        self._db.executescript(f"BEGIN; {_REBUILD_COUNTS} COMMIT;")

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ documents

    def load_docs(self, table: str) -> list[dict[str, Any]]:
        assert table in ("pools", "jobs", "nodes", "jobschedules")
        return [json.loads(row[0]) for row in self._db.execute(f"SELECT doc FROM {table}")]

    def put_pool(self, doc: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO pools (key, doc) VALUES (?, ?)", (doc["id"].lower(), json.dumps(doc))
        )

    def delete_pool(self, pool_id: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM pools WHERE key = ?", (pool_id.lower(),))
            self._db.execute("DELETE FROM nodes WHERE pool_key = ?", (pool_id.lower(),))

    def put_job(self, doc: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO jobs (key, doc) VALUES (?, ?)", (doc["id"].lower(), json.dumps(doc))
        )

    def delete_job(self, job_id: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM jobs WHERE key = ?", (job_id.lower(),))
            self._db.execute("DELETE FROM tasks WHERE job = ?", (job_id.lower(),))
            self._db.execute("DELETE FROM task_counts WHERE job = ?", (job_id.lower(),))
            self._db.execute("DELETE FROM subtasks WHERE job = ?", (job_id.lower(),))

    def put_job_schedule(self, doc: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO jobschedules (key, doc) VALUES (?, ?)",
            (doc["id"].lower(), json.dumps(doc)),
        )

    def delete_job_schedule(self, schedule_id: str) -> None:
        self._db.execute("DELETE FROM jobschedules WHERE key = ?", (schedule_id.lower(),))

    def load_job_id(self, key: str) -> str | None:
        """The original-case id of a stored job."""
        row = self._db.execute("SELECT doc FROM jobs WHERE key = ?", (key,)).fetchone()
        return str(json.loads(row[0])["id"]) if row else None

    def put_node(self, doc: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO nodes (id, pool_key, doc) VALUES (?, ?, ?)",
            (doc["id"], doc["_poolId"].lower(), json.dumps(doc)),
        )

    def delete_node(self, node_id: str) -> None:
        self._db.execute("DELETE FROM nodes WHERE id = ?", (node_id,))

    # ------------------------------------------------------------------ tasks

    def transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def insert_tasks(self, job: str, rows: Sequence[dict[str, Any]]) -> list[bool]:
        """Insert tasks in one transaction; return, per row, False if its id already exists."""
        out: list[bool] = []
        with self.transaction():
            for r in rows:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO tasks (job, key, task_id, spec, state, state_time, creation_time, "
                    "etag, last_modified, blocked, slots) VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?)",
                    (
                        job,
                        r["id"].lower(),
                        r["id"],
                        r["spec"],
                        r["time"],
                        r["time"],
                        r["etag"],
                        r["time"],
                        r["blocked"],
                        r["slots"],
                    ),
                )
                out.append(cur.rowcount == 1)
        return out

    def get_task(self, job: str, key: str) -> TaskRow | None:
        row = self._db.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE job = ? AND key = ?", (job, key)
        ).fetchone()
        return TaskRow(*row) if row else None

    def get_task_by_seq(self, seq: int) -> TaskRow | None:
        row = self._db.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE seq = ?", (seq,)).fetchone()
        return TaskRow(*row) if row else None

    def list_tasks(self, job: str, where: str, args: Sequence[Any], after: int, limit: int) -> list[TaskRow]:
        sql = f"SELECT {TASK_COLUMNS} FROM tasks WHERE job = ? AND seq > ?"
        if where:
            sql += f" AND ({where})"
        sql += " ORDER BY seq LIMIT ?"
        rows = self._db.execute(sql, (job, after, *args, limit)).fetchall()
        return [TaskRow(*r) for r in rows]

    def update_task(self, seq: int, **cols: Any) -> None:
        names = ", ".join(f"{k} = ?" for k in cols)
        self._db.execute(f"UPDATE tasks SET {names} WHERE seq = ?", (*cols.values(), seq))

    def delete_task(self, seq: int) -> None:
        self._db.execute("DELETE FROM tasks WHERE seq = ?", (seq,))

    def runnable(self, jobs: Sequence[str], limit: int) -> list[TaskRow]:
        """Active, unblocked tasks of these jobs, oldest first."""
        if not jobs or limit <= 0:
            return []
        marks = ",".join("?" * len(jobs))
        rows = self._db.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE state = 'active' AND blocked = 0 AND job IN ({marks}) "
            "ORDER BY seq LIMIT ?",
            (*jobs, limit),
        ).fetchall()
        return [TaskRow(*r) for r in rows]

    def blocked_tasks(self, job: str) -> list[tuple[int, str]]:
        return list(
            self._db.execute(
                "SELECT seq, spec FROM tasks WHERE job = ? AND state = 'active' AND blocked = 1", (job,)
            )
        )

    def count_satisfied(self, job: str, keys: Iterable[str]) -> int:
        """How many of these task keys are completed with ``dep_ok``."""
        keys = list(keys)
        total = 0
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            total += self._db.execute(
                f"SELECT count(*) FROM tasks WHERE job = ? AND state = 'completed' AND dep_ok = 1 "
                f"AND key IN ({marks})",
                (job, *chunk),
            ).fetchone()[0]
        return int(total)

    def task_counts(self, job: str) -> list[tuple[str, str | None, int, int]]:
        """(state, result, count, slots) groups of a job, from the trigger-kept ``task_counts``."""
        return [
            (state, result or None, n, slots)
            for state, result, n, slots in self._db.execute(
                "SELECT state, result, n, slots FROM task_counts WHERE job = ? AND n > 0", (job,)
            )
        ]

    def count_unfinished(self, job: str) -> int:
        return int(
            self._db.execute(
                "SELECT count(*) FROM tasks WHERE job = ? AND state != 'completed'", (job,)
            ).fetchone()[0]
        )

    def multi_instance_tasks(self) -> list[tuple[str, str]]:
        """(job, task key) of the unfinished tasks with ``multiInstanceSettings``."""
        return list(
            self._db.execute(
                "SELECT job, key FROM tasks WHERE state != 'completed'"
                " AND instr(spec, '\"multiInstanceSettings\"') > 0"
            )
        )

    # ------------------------------------------------------------------ multi-instance

    def put_subtasks(self, seq: int, job: str, rows: Sequence[SubtaskRow], *, replace: bool = False) -> None:
        """Write instances ``(idx, doc, pgid, marker)`` of task ``seq`` (``marker``: see
        :meth:`live_subtasks`); with ``replace`` (a new run) they replace every earlier one."""
        with self.transaction():
            if replace:
                self._db.execute("DELETE FROM subtasks WHERE seq = ?", (seq,))
            self._db.executemany(
                "INSERT OR REPLACE INTO subtasks (seq, idx, job, doc, pgid, marker)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(seq, idx, job, json.dumps(doc), pgid, marker) for idx, doc, pgid, marker in rows],
            )

    def subtasks(self, seq: int) -> list[dict[str, Any]]:
        """The listed subtasks (index >= 1) of task ``seq``, in index order."""
        rows = self._db.execute("SELECT doc FROM subtasks WHERE seq = ? AND idx > 0 ORDER BY idx", (seq,))
        return [json.loads(doc) for (doc,) in rows]

    def live_subtasks(self) -> list[tuple[int, int, dict[str, Any], int | None, str]]:
        """After a restart: ``(seq, idx, doc, pgid, marker)`` of instances that had not ended, where
        ``marker`` is the ``AZ_BATCH_TASK_DIR=...`` their processes carry."""
        rows = self._db.execute(
            "SELECT seq, idx, doc, pgid, marker FROM subtasks WHERE pgid IS NOT NULL"
            " OR json_extract(doc, '$.state') = 'running'"
        )
        return [(seq, idx, json.loads(doc), pgid, marker) for seq, idx, doc, pgid, marker in rows]

    def tasks_in_state(self, state: str, job: str | None = None) -> list[TaskRow]:
        if job is None:
            rows = self._db.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE state = ?", (state,))
        else:
            rows = self._db.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE state = ? AND job = ?", (state, job)
            )
        return [TaskRow(*r) for r in rows]

    def requeue_running(self, time: str, etag: str) -> int:
        """After a restart: running tasks go back to active, ``requeue_count`` + 1."""
        cur = self._db.execute(
            "UPDATE tasks SET prev_state = state, prev_state_time = state_time, state = 'active', "
            "state_time = ?, last_modified = ?, etag = ?, requeue_count = requeue_count + 1, "
            "last_requeue_time = ?, node_id = NULL, pgid = NULL WHERE state IN ('running', 'preparing')",
            (time, time, etag, time),
        )
        return cur.rowcount


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
