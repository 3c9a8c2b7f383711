"""Autoscale: Batch's formula language evaluated for real, through the official SDK.

The service tests run on a localbatch of their own started with
``--autoscale-min-interval 0.5`` so that pools may evaluate every second
(Azure's minimum is 5 minutes).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from localbatch import autoscale
from runner.pool_spec import AutoscaleSpec
from tests.conftest import Azurite, LocalBatch, start_localbatch
from tests.localbatch.conftest import batch_client, new_job, unique, wait_for

EVERY_SECOND = timedelta(seconds=1)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[LocalBatch]:
    server = start_localbatch(
        tmp_path_factory.mktemp("autoscale"), azurite, extra_args=["--autoscale-min-interval", "0.5"]
    )
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def client(fast: LocalBatch) -> BatchClient:
    return batch_client(fast)


def _autoscale_pool(client: BatchClient, formula: str, interval: timedelta = EVERY_SECOND) -> str:
    pool_id = unique("as")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v5",
            enable_auto_scale=True,
            auto_scale_formula=formula,
            auto_scale_evaluation_interval=interval,
        )
    )
    return pool_id


def test_the_projects_autoscale_pool_scales_0_to_max_to_0(client: BatchClient) -> None:
    spec = AutoscaleSpec(min_nodes=0, max_nodes=3)
    pool_id = _autoscale_pool(client, spec.formula(task_slots_per_node=1))
    pool = wait_for(lambda: p if (p := client.get_pool(pool_id)).auto_scale_run else None)
    assert pool.current_dedicated_nodes == 0 and pool.target_dedicated_nodes == 0
    assert pool.auto_scale_run is not None and pool.auto_scale_run.error is None
    assert "$TargetDedicatedNodes=0" in (pool.auto_scale_run.results or "")
    job_id = new_job(client, pool_id)
    client.create_task_collection(
        job_id,
        bm.BatchTaskGroup(
            task_values=[bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/sleep 1") for i in range(8)]
        ),
    )
    wait_for(lambda: client.get_pool(pool_id).current_dedicated_nodes == 3, timeout=60)
    assert client.get_pool(pool_id).target_dedicated_nodes == spec.max_nodes
    wait_for(lambda: all(t.state == "completed" for t in client.list_tasks(job_id)), timeout=90)
    wait_for(lambda: client.get_pool(pool_id).current_dedicated_nodes == 0, timeout=60)
    pool = client.get_pool(pool_id)
    assert pool.target_dedicated_nodes == 0 and pool.auto_scale_run is not None
    assert "$TargetDedicatedNodes=0" in (pool.auto_scale_run.results or "")
    assert all(t.execution_info and t.execution_info.exit_code == 0 for t in client.list_tasks(job_id))


def test_evaluate_enable_disable(client: BatchClient) -> None:
    pool_id = unique("fixed")
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=0))
    with pytest.raises(HttpResponseError) as err:
        client.evaluate_pool_auto_scale(
            pool_id, bm.BatchPoolEvaluateAutoScaleOptions(auto_scale_formula="$x=1;")
        )
    assert err.value.status_code == 409 and err.value.error is not None
    assert err.value.error.code == "AutoScaleNotEnabled"
    client.enable_pool_auto_scale(
        pool_id,
        bm.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula="$TargetDedicatedNodes = 2;", auto_scale_evaluation_interval=EVERY_SECOND
        ),
    )
    wait_for(lambda: client.get_pool(pool_id).current_dedicated_nodes == 2)
    run = client.evaluate_pool_auto_scale(
        pool_id,
        bm.BatchPoolEvaluateAutoScaleOptions(
            auto_scale_formula="$a = max({1, 4, 2}) * 2; $TargetDedicatedNodes = $a > 5 ? 1 : 0;"
        ),
    )
    assert run.error is None and run.results is not None
    assert "$TargetDedicatedNodes=1" in run.results and "$a=8" in run.results
    before = client.get_pool(pool_id).auto_scale_run
    assert before is not None
    # An evaluation does not apply: the pool's own next evaluation still keeps it at 2.
    later = wait_for(
        lambda: (
            r if (r := client.get_pool(pool_id).auto_scale_run) and r.timestamp > before.timestamp else None
        )
    )
    assert "$TargetDedicatedNodes=2" in (later.results or "")
    assert client.get_pool(pool_id).target_dedicated_nodes == 2
    failing = client.evaluate_pool_auto_scale(
        pool_id,
        bm.BatchPoolEvaluateAutoScaleOptions(
            auto_scale_formula="$TargetDedicatedNodes = avg($PendingTasks.GetSample(TimeInterval_Hour, 90));"
        ),
    )
    assert failing.error is not None and failing.error.code == "InvalidAutoScaleFormula"
    assert failing.error.error_values and "90%" in str(failing.error.error_values[0].value)
    with pytest.raises(HttpResponseError) as err:
        client.begin_resize_pool(pool_id, bm.BatchPoolResizeOptions(target_dedicated_nodes=1))
    assert err.value.status_code == 409
    client.disable_pool_auto_scale(pool_id)
    pool = client.get_pool(pool_id)
    assert not pool.enable_auto_scale and pool.auto_scale_formula is None
    assert pool.target_dedicated_nodes == 2  # disabling keeps the current targets
    client.begin_resize_pool(
        pool_id, bm.BatchPoolResizeOptions(target_dedicated_nodes=0), polling_interval=0.1
    ).result()


@pytest.mark.parametrize(
    "formula",
    ["$TargetDedicatedNodes = ;", "$TargetDedicatedNodes = nope(1);", "$CurrentDedicatedNodes = 3;", "1 +"],
)
def test_invalid_formula_is_refused_at_creation(client: BatchClient, formula: str) -> None:
    with pytest.raises(HttpResponseError) as err:
        _autoscale_pool(client, formula)
    assert err.value.status_code == 400 and err.value.error is not None
    assert err.value.error.code == "InvalidAutoScaleFormula"


def test_evaluation_interval_bounds(client: BatchClient, localbatch: LocalBatch) -> None:
    with pytest.raises(HttpResponseError) as err:
        _autoscale_pool(client, "$TargetDedicatedNodes = 0;", timedelta(seconds=0.1))
    assert err.value.status_code == 400 and err.value.error is not None
    assert err.value.error.code == "InvalidPropertyValue"
    default = batch_client(localbatch)  # the session server keeps Batch's 5-minute minimum
    with pytest.raises(HttpResponseError) as err:
        _autoscale_pool(default, "$TargetDedicatedNodes = 0;", timedelta(minutes=4))
    assert err.value.status_code == 400
    pool_id = _autoscale_pool(default, "$TargetDedicatedNodes = 0;", timedelta(minutes=5))
    assert default.get_pool(pool_id).auto_scale_evaluation_interval == timedelta(minutes=5)
    default.begin_delete_pool(pool_id, polling_interval=0.1).result()


# ---------------------------------------------------------------------- the language


def _run(formula: str, samples: list[float] | None = None, **variables: float) -> dict[str, str]:
    history = autoscale.SampleHistory(period=1.0)
    now = 1000.0
    for i, v in enumerate(samples or []):
        history.record({"$PendingTasks": v}, now - len(samples or []) + i + 1)
    values: dict[str, autoscale.Value] = {"$TargetDedicatedNodes": 0.0, "$NodeDeallocationOption": "requeue"}
    values.update({f"${k}": v for k, v in variables.items()})
    out = autoscale.evaluate(autoscale.parse(formula), autoscale.Context(values, history, now))
    return {k: autoscale.render(v) for k, v in out.items()}


def test_language_operators_functions_and_samples() -> None:
    assert _run("$a = 1 + 2 * 3 - 4 / 2; $b = -$a % 4; $c = !0 && (1 || 0);") == {
        "$a": "5",
        "$b": "-1",
        "$c": "1",
    }
    assert _run("$a = 2 >= 2 ? (1 < 0 ? 7 : 8) : 9; $b = 3 != 3;") == {"$a": "8", "$b": "0"}
    assert _run("$a = sum({1,2,3}) + count({4,5}) + min(3, {1, 9}) + floor(2.7) + ceil(0.2);")["$a"] == "12"
    assert _run("$i = TimeInterval_Minute * 2 / TimeInterval_Second;")["$i"] == "120"
    assert _run('$d = taskcompletion; $e = $d == "TaskCompletion";') == {"$d": "taskcompletion", "$e": "1"}
    got = _run(
        "$last = $PendingTasks.GetSample(1); $n = count($PendingTasks.GetSample(TimeInterval_Second * 3));"
        "$p = $PendingTasks.GetSamplePercent(TimeInterval_Second * 10);"
        "$m = avg($PendingTasks.GetSample(2));",
        samples=[1, 2, 3, 4, 5, 6],
    )
    assert got == {"$last": "[6]", "$n": "4", "$p": "60", "$m": "5.5"}
    assert _run("// a comment\n$x = 1; // another\n$y = $x + 1")["$y"] == "2"


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("$a = $b + 1;", "before it is assigned"),
        ("$a = $PendingTasks + 1;", "metric"),
        ("$a = 1 / 0;", "division by zero"),
        ("$a = $PendingTasks.GetSample(3);", "only 0 sample"),
        ('$a = "x" < 1;', "compare strings"),
        ("$a = avg({});", "empty"),
    ],
)
def test_language_evaluation_errors(formula: str, message: str) -> None:
    with pytest.raises(autoscale.FormulaError, match=message) as err:
        _run(formula)
    assert err.value.phase == "evaluate"


def test_language_depth_is_bounded() -> None:
    with pytest.raises(autoscale.FormulaError, match="nests deeper"):
        autoscale.parse("$a = " + "(" * 200 + "1" + ")" * 200 + ";")
    with pytest.raises(autoscale.FormulaError, match="nests deeper"):
        autoscale.parse("$a = " + "-" * 200 + "1;")


def test_formula_without_autoscale_is_refused(client: BatchClient) -> None:
    with pytest.raises(HttpResponseError) as err:
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id=unique("noas"),
                vm_size="x",
                target_dedicated_nodes=0,
                auto_scale_formula="$TargetDedicatedNodes=1;",
            )
        )
    assert err.value.status_code == 400 and err.value.error is not None
    assert err.value.error.code == "InvalidPropertyValue"
