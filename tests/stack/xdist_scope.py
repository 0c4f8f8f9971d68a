"""Send every test of tests/stack to one xdist worker, so one booted stack serves them all.

``--dist loadgroup`` groups tests by the ``xdist_group`` marker, which pytest-xdist 3.8 encodes
by editing ``item._nodeid``; pytest 9 no longer reads that attribute, so the marker is silently
ignored and the stack tests spread over both workers (two stacks booting on 2 cores). This
scheduler groups by path instead, and otherwise schedules like ``loadgroup`` (each other test its
own scope). The root conftest registers the hook; it applies only with ``--dist loadgroup``.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling

STACK_TESTS = "tests/stack/"


class StackGroupScheduling(LoadGroupScheduling):
    """``loadgroup`` with tests/stack as one group, whatever pytest does to node ids."""

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.startswith(STACK_TESTS):
            return "stack"
        return super()._split_scope(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadGroupScheduling | None:
    if config.getvalue("dist") == "loadgroup":
        return StackGroupScheduling(config, log)
    return None
