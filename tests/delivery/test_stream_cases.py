"""The stream's case analysis against the state table of docs/delivery.md, row by row.

The table is read from the doc itself: a row added to the doc without a case here fails, and a
case here whose row left the doc fails, so the doc and :func:`ciyuan.delivery.cases.decide`
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ciyuan.delivery.cases import BatchState, Case, Decision, decide

DOC = Path(__file__).resolve().parents[2] / "docs" / "delivery.md"
SECTION = "## The stream"
HEADER = ("request cursor", "what happens")

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
SIZE = 1000


def table_rows() -> list[tuple[str, str]]:
    """(request cursor, what happens) of each row of the state table under "The stream"."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    try:
        at = lines.index(SECTION)
    except ValueError:
        pytest.fail(f"{DOC}: no section {SECTION!r}; the state table lives there")
    rows: list[tuple[str, str]] = []
    in_table = False
    for n, line in enumerate(lines[at + 1 :], start=at + 2):
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            if in_table:
                break
            continue
        cells = tuple(c.strip() for c in line.strip().strip("|").split("|"))
        if not in_table:
            if cells != HEADER:
                pytest.fail(f"{DOC}:{n}: the first table of {SECTION!r} must have the header {HEADER}, not {cells}")
            in_table = True
            continue
        if set(line) <= set("|- :"):
            continue  # the separator line
        if len(cells) != 2:
            pytest.fail(f"{DOC}:{n}: a state table row has two cells, this one has {len(cells)}: {line}")
        rows.append(cells)
    if not rows:
        pytest.fail(f"{DOC}: the state table under {SECTION!r} has no rows")
    return rows


def batch(start: int, end: int, state: str = "pending", expires_at: datetime = LATER) -> BatchState:
    return BatchState(start, end, state, expires_at)


@dataclass(frozen=True)
class Scene:
    """One state of a stream and a request cursor, with the decision the row says it gets."""

    why: str
    charged: int
    open_batch: BatchState | None
    last_batch: BatchState | None
    cursor: int
    expect: Decision


# charged 100 of a partition of 1000 records; an open batch always starts at the charged offset
SCENES: dict[str, list[Scene]] = {
    "`= open.end`": [
        Scene("the open batch ends at the cursor", 100, batch(100, 150), None, 150, Decision(Case.POST_OPEN)),
        Scene("an expired last batch is not acknowledged by posting the open one", 100, batch(100, 150),
              batch(50, 100, "expired"), 150, Decision(Case.POST_OPEN)),
        Scene("the last batch of the partition", 950, batch(950, 1000), batch(900, 950, "posted"), 1000,
              Decision(Case.POST_OPEN)),
    ],
    "`= open.start`": [
        Scene("the cursor is where the open batch starts", 100, batch(100, 150), None, 100,
              Decision(Case.REDELIVER)),
        Scene("the first batch of a stream", 0, batch(0, 50), None, 0, Decision(Case.REDELIVER)),
        Scene("after a posted batch", 100, batch(100, 150), batch(50, 100, "posted"), 100,
              Decision(Case.REDELIVER)),
    ],
    "`= charged`, nothing open": [
        Scene("a new stream", 0, None, None, 0, Decision(Case.NEXT)),
        Scene("after an acknowledged batch", 100, None, batch(50, 100, "posted"), 100, Decision(Case.NEXT)),
        Scene("after a batch charged at its deadline: this acknowledges it", 100, None,
              batch(50, 100, "expired"), 100, Decision(Case.NEXT, acknowledges_last=True)),
        Scene("everything charged: the request gets done", SIZE, None, batch(950, SIZE, "posted"), SIZE,
              Decision(Case.NEXT)),
    ],
    "`< charged`": [
        Scene("nothing open", 100, None, batch(50, 100, "posted"), 40, Decision(Case.REPLAY)),
        Scene("with a batch open", 100, batch(100, 150), None, 0, Decision(Case.REPLAY)),
        Scene("the start of a batch charged at its deadline (the /meter cursor) re-reads it free", 100, None,
              batch(50, 100, "expired"), 50, Decision(Case.REPLAY)),
    ],
    "`= last.end`, last voided under the old rule": [
        Scene("the voided batch starts at the charged offset", 100, None, batch(100, 150, "voided"), 150,
              Decision(Case.LATE_ACK)),
    ],
    "anything else": [
        Scene("inside the open batch", 100, batch(100, 150), None, 120, Decision(Case.STALE)),
        Scene("past the open batch", 100, batch(100, 150), None, 200, Decision(Case.STALE)),
        Scene("ahead of the charged offset, nothing open", 100, None, batch(50, 100, "posted"), 150,
              Decision(Case.STALE)),
        Scene("past an expired last batch", 100, None, batch(50, 100, "expired"), 150, Decision(Case.STALE)),
        Scene("the end of a voided batch while another is open", 100, batch(100, 130),
              batch(100, 150, "voided"), 150, Decision(Case.STALE)),
        Scene("the end of a voided batch that does not start at the charged offset", 150, None,
              batch(100, 170, "voided"), 170, Decision(Case.STALE)),
    ],
    "(no request) the open batch passes its deadline": [
        Scene("whatever the cursor", 100, batch(100, 150, expires_at=NOW - timedelta(seconds=1)), None, 150,
              Decision(Case.OVERDUE)),
        Scene("a cursor that would redeliver it", 100, batch(100, 150, expires_at=NOW - timedelta(hours=1)),
              None, 100, Decision(Case.OVERDUE)),
        Scene("a cursor past the end", 100, batch(100, 150, expires_at=NOW - timedelta(seconds=1)), None,
              SIZE + 1, Decision(Case.OVERDUE)),
        Scene("the deadline is now (the sweeper's expires_at <= now)", 100, batch(100, 150, expires_at=NOW),
              None, 150, Decision(Case.OVERDUE)),
    ],
}

# cases the table does not list, each with why
NOT_IN_TABLE = {Case.PAST_END: "a cursor past the partition's end is a 400 bad_cursor, not a state of the stream"}

ROWS = table_rows()


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_each_row_of_the_state_table(row: tuple[str, str]) -> None:
    cursor, what = row
    assert cursor in SCENES, (
        f"{DOC}: the state table row {cursor!r} ({what}) has no case in tests/delivery/test_stream_cases.py; "
        "add its scenes to SCENES and, if it is new, its Case to ciyuan/delivery/cases.py"
    )
    for sc in SCENES[cursor]:
        got = decide(sc.charged, sc.open_batch, sc.last_batch, sc.cursor, SIZE, NOW)
        assert got == sc.expect, f"row {cursor!r}, {sc.why}: {got} instead of {sc.expect}"


def test_every_case_here_is_a_row_of_the_doc() -> None:
    stale = set(SCENES) - {r[0] for r in ROWS}
    assert not stale, f"{DOC}: the state table has no rows {sorted(stale)}; remove them here or restore the doc"


def test_every_case_is_in_the_table_or_said_why_not() -> None:
    in_table = {sc.expect.case for scenes in SCENES.values() for sc in scenes}
    assert in_table.isdisjoint(NOT_IN_TABLE)
    assert in_table | set(NOT_IN_TABLE) == set(Case), f"cases nowhere: {set(Case) - in_table - set(NOT_IN_TABLE)}"


def test_a_cursor_past_the_end_is_refused_unless_an_overdue_batch_comes_first() -> None:
    assert decide(100, None, None, SIZE + 1, SIZE, NOW) == Decision(Case.PAST_END)
    assert decide(100, batch(100, 150), None, SIZE + 1, SIZE, NOW) == Decision(Case.PAST_END)
    assert decide(SIZE, None, None, SIZE, SIZE, NOW) == Decision(Case.NEXT)
