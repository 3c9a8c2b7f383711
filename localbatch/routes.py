"""The route table: Batch's URL templates (as the spec writes them) to handler names.

A template's ``{name}`` matches one path segment, ``{name+}`` one or more (a file
path); other segments match case-insensitively. :func:`match` returns the
``{HTTP method: handler name}`` of the first template that fits, or None.
Handler names are methods of :class:`localbatch.server.BatchApi`.
"""

from __future__ import annotations

ROUTES: tuple[tuple[str, dict[str, str]], ...] = (
    ("supportedimages", {"GET": "list_supported_images"}),
    ("nodeagentskus", {"GET": "list_node_agent_skus"}),  # api-versions before 2020-09-01 only
    ("nodecounts", {"GET": "list_node_counts"}),
    ("poolusagemetrics", {"GET": "list_usage_metrics"}),
    ("pools", {"GET": "list_pools", "POST": "create_pool"}),
    (
        "pools/{poolId}",
        {"GET": "get_pool", "HEAD": "pool_exists", "DELETE": "delete_pool", "PATCH": "patch_pool"},
    ),
    ("pools/{poolId}/resize", {"POST": "resize_pool"}),
    ("pools/{poolId}/stopresize", {"POST": "stop_resize"}),
    ("pools/{poolId}/removenodes", {"POST": "remove_nodes"}),
    ("pools/{poolId}/updateproperties", {"POST": "replace_pool_properties"}),
    ("pools/{poolId}/enableautoscale", {"POST": "enable_autoscale"}),
    ("pools/{poolId}/disableautoscale", {"POST": "disable_autoscale"}),
    ("pools/{poolId}/evaluateautoscale", {"POST": "evaluate_autoscale"}),
    ("pools/{poolId}/nodes", {"GET": "list_nodes"}),
    ("pools/{poolId}/nodes/{nodeId}", {"GET": "get_node"}),
    ("pools/{poolId}/nodes/{nodeId}/reboot", {"POST": "restart_node"}),
    ("pools/{poolId}/nodes/{nodeId}/reimage", {"POST": "restart_node"}),
    ("pools/{poolId}/nodes/{nodeId}/deallocate", {"POST": "restart_node"}),
    ("pools/{poolId}/nodes/{nodeId}/start", {"POST": "start_node"}),
    ("pools/{poolId}/nodes/{nodeId}/disablescheduling", {"POST": "node_scheduling"}),
    ("pools/{poolId}/nodes/{nodeId}/enablescheduling", {"POST": "node_scheduling"}),
    ("pools/{poolId}/nodes/{nodeId}/extensions", {"GET": "node_extensions"}),
    ("pools/{poolId}/nodes/{nodeId}/extensions/{extensionName}", {"GET": "node_extensions"}),
    ("pools/{poolId}/nodes/{nodeId}/files", {"GET": "list_node_files"}),
    ("pools/{poolId}/nodes/{nodeId}/users", {"POST": "add_node_user"}),
    (
        "pools/{poolId}/nodes/{nodeId}/users/{userName}",
        {"PUT": "update_node_user", "DELETE": "delete_node_user"},
    ),
    ("pools/{poolId}/nodes/{nodeId}/remoteloginsettings", {"GET": "remote_login_settings"}),
    ("pools/{poolId}/nodes/{nodeId}/uploadbatchservicelogs", {"POST": "upload_node_logs"}),
    ("applications", {"GET": "list_applications"}),
    ("applications/{applicationId}", {"GET": "get_application"}),
    ("jobs/{jobId}/tasks/{taskId}/subtasksinfo", {"GET": "list_subtasks"}),
    (
        "pools/{poolId}/nodes/{nodeId}/files/{filePath+}",
        {"GET": "get_node_file", "HEAD": "get_node_file", "DELETE": "delete_node_file"},
    ),
    ("jobschedules", {"GET": "list_job_schedules", "POST": "create_job_schedule"}),
    (
        "jobschedules/{jobScheduleId}",
        {
            "GET": "get_job_schedule",
            "HEAD": "job_schedule_exists",
            "DELETE": "delete_job_schedule",
            "PATCH": "update_job_schedule",
            "PUT": "replace_job_schedule",
        },
    ),
    ("jobschedules/{jobScheduleId}/disable", {"POST": "disable_job_schedule"}),
    ("jobschedules/{jobScheduleId}/enable", {"POST": "enable_job_schedule"}),
    ("jobschedules/{jobScheduleId}/terminate", {"POST": "terminate_job_schedule"}),
    ("jobschedules/{jobScheduleId}/jobs", {"GET": "list_jobs_from_schedule"}),
    ("jobs", {"GET": "list_jobs", "POST": "create_job"}),
    ("jobs/{jobId}", {"GET": "get_job", "DELETE": "delete_job", "PATCH": "patch_job", "PUT": "patch_job"}),
    ("jobs/{jobId}/terminate", {"POST": "terminate_job"}),
    ("jobs/{jobId}/disable", {"POST": "disable_job"}),
    ("jobs/{jobId}/enable", {"POST": "enable_job"}),
    ("jobs/{jobId}/taskcounts", {"GET": "task_counts"}),
    ("jobs/{jobId}/jobpreparationandreleasetaskstatus", {"GET": "list_job_prep_release_status"}),
    ("jobs/{jobId}/addtaskcollection", {"POST": "add_task_collection"}),
    ("jobs/{jobId}/tasks", {"GET": "list_tasks", "POST": "add_task"}),
    ("jobs/{jobId}/tasks/{taskId}", {"GET": "get_task", "DELETE": "delete_task", "PUT": "update_task"}),
    ("jobs/{jobId}/tasks/{taskId}/terminate", {"POST": "terminate_task"}),
    ("jobs/{jobId}/tasks/{taskId}/reactivate", {"POST": "reactivate_task"}),
    ("jobs/{jobId}/tasks/{taskId}/files", {"GET": "list_task_files"}),
    (
        "jobs/{jobId}/tasks/{taskId}/files/{filePath+}",
        {"GET": "get_task_file", "HEAD": "get_task_file", "DELETE": "delete_task_file"},
    ),
)


def _compile(template: str) -> tuple[tuple[str, ...], bool]:
    parts = tuple(template.split("/"))
    return parts, parts[-1].endswith("+}")


_COMPILED = tuple((*_compile(t), methods) for t, methods in ROUTES)


def _fits(parts: tuple[str, ...], rest: bool, segments: list[str]) -> bool:
    fits_length = len(segments) >= len(parts) if rest else len(segments) == len(parts)
    if not fits_length:
        return False
    return all(p.startswith("{") or p == s.lower() for p, s in zip(parts, segments, strict=False))


def match(segments: list[str]) -> dict[str, str] | None:
    """The handlers (by HTTP method) of the first route whose template fits ``segments``."""
    for parts, rest, methods in _COMPILED:
        if _fits(parts, rest, segments):
            return methods
    return None


def shape_of(segments: list[str]) -> str | None:
    """The template of the first route that fits ``segments``, its placeholders written ``{}``
    (``jobs/{}/tasks/{}``): what request checks key on, whatever the handlers are named."""
    for parts, rest, _methods in _COMPILED:
        if _fits(parts, rest, segments):
            return "/".join("{}" if p.startswith("{") else p for p in parts)
    return None
