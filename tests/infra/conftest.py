"""Fixtures for the Pulumi program's tests: a mocked engine, reset around every test.

Pulumi keeps its configuration, settings and root stack in process-global state;
``deploy`` starts from a clean slate each time and the autouse fixture clears it
afterwards, so the order of tests does not matter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pulumi
import pytest
from pulumi.runtime import settings
from pulumi.runtime.config import set_all_config

from infra.config import load_config
from infra.environment import BatchEnvironment
from tests.infra.mocks import AzureMocks, Resolved, resolve, start_engine


@dataclass(frozen=True)
class Deployment:
    """The component built under mocks, what the mocked provider saw, and the resolved outputs."""

    environment: BatchEnvironment
    mocks: AzureMocks
    outputs: Resolved
    urns: dict[str, str]


@pytest.fixture(autouse=True)
def _clean_pulumi_runtime() -> Iterator[None]:
    # Pulumi's test runner uses the thread's current event loop; a test elsewhere in the same
    # process that ended with asyncio.run() leaves none (so the order of test files matters).
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())
    yield
    set_all_config({}, [])
    settings.ROOT.set(None)


def _urns(environment: BatchEnvironment) -> dict[str, pulumi.Output[str]]:
    return {name: child.urn for name, child in environment.children.items()}


@pytest.fixture
def deploy() -> Callable[[dict[str, str]], Deployment]:
    """Build ``BatchEnvironment`` from a literal stack configuration, under mocks, and wait for it."""

    def run(config: dict[str, str]) -> Deployment:
        mocks = start_engine(config)
        built: dict[str, Deployment] = {}

        @pulumi.runtime.test
        def program() -> pulumi.Output[Deployment]:
            environment = BatchEnvironment("azbatch", load_config())
            urns = pulumi.Output.all(**_urns(environment))
            resolved: pulumi.Output[Resolved] = pulumi.Output.from_input(resolve(environment.exports()))

            def record(args: list[object]) -> Deployment:
                outputs, urn_map = args
                assert isinstance(outputs, Resolved) and isinstance(urn_map, dict)
                built["deployment"] = Deployment(environment, mocks, outputs, urn_map)
                return built["deployment"]

            return pulumi.Output.all(resolved, urns).apply(record)

        program()
        return built["deployment"]

    return run
