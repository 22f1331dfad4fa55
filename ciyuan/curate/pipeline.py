"""Run a list of steps over records held in memory: the reference the executors must agree with."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable

from ciyuan.curate.steps import GlobalStep, Step


def run_steps(records: Iterable[dict], steps: list[Step]) -> list[dict]:
    """Apply ``steps`` in order; global steps get their scan rounds over everything before them.

    Returns every record (kept and rejected) in input order; statistics stay on the steps.
    """
    current = list(records)
    for step in steps:
        if isinstance(step, GlobalStep):
            with tempfile.TemporaryDirectory(prefix="ciyuan-scan-") as scratch:
                round_, context = 0, step.begin(scratch, len(current))
                while True:
                    live = step.scan_input(current)
                    part = step.scan(round_, live, 0, context)
                    done, context = step.reduce(round_, [part], context)
                    round_ += 1
                    if done:
                        step.bind(step.plan_for(context, 0))
                        break
        current = list(step(current))
    return current
