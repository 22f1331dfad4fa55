"""The stream's case analysis as pure functions of its state: which case a request cursor falls in.

:func:`decide` reads nothing but its arguments (the charged offset, the open and the last batch,
the cursor's offset, the partition's size and the time), so the state table of docs/delivery.md
("The stream") is checked against it row by row (tests/delivery/test_stream_cases.py reads the
table from the doc). :func:`ciyuan.delivery.stream._step_inner` calls it under the meter's lock
and acts on the answer: posting, holding and the audit events stay there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ciyuan.delivery.tables import BatchRow, StreamRow


class Case(enum.Enum):
    """What a request does with its cursor (the rows of the state table, plus a cursor past the end)."""

    OVERDUE = "overdue"  # the open batch passed its deadline: post it (charged, unacknowledged) first
    PAST_END = "past_end"  # the offset is past the partition's end: 400 bad_cursor
    POST_OPEN = "post_open"  # = open.end: the open batch was received; post it, then hold the next
    REDELIVER = "redeliver"  # = open.start: the open batch was lost; send it again under its hold
    LATE_ACK = "late_ack"  # = last.end, last voided under the old rule: hold and post it now
    REPLAY = "replay"  # < charged: re-read charged records, free, nothing changes
    NEXT = "next"  # = charged with nothing open: hold and send the next batch
    STALE = "stale"  # anything else: 409 cursor_stale with the cursor to resume from


@dataclass(frozen=True)
class BatchState:
    """What the case analysis needs of a batch: its bounds, its state and its ack deadline."""

    start: int
    end: int
    state: str  # pending | posted | expired | voided
    expires_at: datetime


@dataclass(frozen=True)
class Decision:
    """The case, and whether this cursor also acknowledges the last batch (charged at its deadline)."""

    case: Case
    acknowledges_last: bool = False


def decide(charged: int, open_batch: BatchState | None, last_batch: BatchState | None, cursor_offset: int,
           size: int, now: datetime) -> Decision:
    """The case a request with ``cursor_offset`` falls in, given the stream's state.

    ``charged`` is the offset charged so far (``dl_streams.acked``); an open batch, if any, starts
    there. The tests are in the order the cases take precedence: an overdue open batch is settled
    before the cursor is read at all, and an open batch is matched before the charged offset.
    """
    o, ob, last = cursor_offset, open_batch, last_batch
    if ob is not None and ob.expires_at <= now:
        return Decision(Case.OVERDUE)
    if o > size:
        return Decision(Case.PAST_END)
    acknowledges = ob is None and last is not None and last.state == "expired" and o == last.end
    if ob is not None and o == ob.end and o != ob.start:
        case = Case.POST_OPEN
    elif ob is not None and o == ob.start:
        case = Case.REDELIVER
    elif ob is None and last is not None and last.state == "voided" and last.start == charged and o == last.end:
        case = Case.LATE_ACK
    elif o < charged:
        case = Case.REPLAY
    elif ob is None and o == charged:
        case = Case.NEXT
    else:
        case = Case.STALE
    return Decision(case, acknowledges)


def resume_offset(st: StreamRow, last: BatchRow | None) -> int:
    """Where this stream should resume: the end of what the buyer acknowledged.

    That is the charged offset, except when the last batch was charged because its deadline passed
    unacknowledged (the buyer may never have taken it): then its start, and re-reading it is free.
    An open batch starts at the charged offset, so resuming there redelivers it under its hold.
    """
    if st.open_batch is None and last is not None and last.state == "expired":
        return last.start
    return st.acked

