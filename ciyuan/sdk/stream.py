"""``TokenStream``: an entitlement as an iterable of records for a training loop, resumable exactly.

With torch installed it is a ``torch.utils.data.IterableDataset``; without torch it is a plain
iterable with the same behaviour. Under a DataLoader with N workers (times ``world_size`` ranks)
worker ``k`` streams partition ``k`` of the selection, and partitions are disjoint contiguous
slices, so no record is seen twice.

Exact resume: each record carries ``_part`` (its partition), ``_start`` (the offset of the batch it
came in) and ``_offset`` (its own offset). The loop's view of progress is what it consumed, not
what workers prefetched, so :meth:`TokenStream.track` (or iterating in the main process) updates
the state from the records the loop actually received. :meth:`state_dict` then says, per
partition, the batch to ask for again and how far into it to skip; asking again for an already
paid batch is a free replay, so resuming never pays twice.

Acknowledging: a batch is acknowledged (the next request carries its cursor) only when the
iterator is asked for the record after the batch's last one, i.e. once its consumer took every
record of it; so the exchange's ``/meter`` resume cursor never points past a record the iterator
did not hand on. ``read_ahead=True`` asks for the next batch as soon as a batch is taken (it
overlaps the next download with consuming this one); a crash then leaves the resume point after
the batch being consumed, and only :meth:`state_dict` resumes exactly. Either way what the
exchange sent is charged once, and re-reading it is free.

The partition count is fixed when a stream starts (the exchange meters each partition). Resuming
with a different number of workers or ranks keeps it: iterator ``g`` of ``L`` takes the saved
partitions ``g, g + L, g + 2L, ...`` one after another, so a job can resume on another machine
shape and still see every record exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ciyuan.exchange.metering import Cursor
from ciyuan.sdk.client import DEFAULT_MAX_TOKENS, Client

try:  # torch is optional: subclass its IterableDataset only when it is there
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info as _worker_info
except ImportError:  # pragma: no cover - exercised on machines without torch
    _Base = object  # type: ignore[assignment,misc]

    def _worker_info():  # type: ignore[no-redef]
        return None


POSITION_KEYS = ("_part", "_start", "_offset")


class TokenStream(_Base):  # type: ignore[misc,valid-type]
    """Records of an entitlement, split across DataLoader workers (and ranks) without overlap."""

    def __init__(self, client: Client | str, entitlement_id: str, key: str | None = None, *,
                 max_tokens: int = DEFAULT_MAX_TOKENS, fmt: str = "arrow", rank: int = 0, world_size: int = 1,
                 num_workers: int | None = None, read_ahead: bool = False):
        super().__init__()
        self.client = client if isinstance(client, Client) else Client(client, key)
        self.entitlement_id = entitlement_id
        self.max_tokens = max_tokens
        self.fmt = fmt
        self.rank, self.world_size = rank, world_size
        self.num_workers = num_workers
        self.read_ahead = read_ahead
        self._parts: int | None = None
        self._state: dict[int, tuple[int, int]] = {}  # part -> (batch start, next offset)

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Per partition, where to resume: ``{"parts": n, "positions": {part: [batch_start, next_offset]}}``."""
        return {
            "entitlement_id": self.entitlement_id,
            "parts": self._parts,
            "positions": {str(k): [s, o] for k, (s, o) in sorted(self._state.items())},
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("entitlement_id") not in (None, self.entitlement_id):
            raise ValueError(f"state is for entitlement {state.get('entitlement_id')}, not {self.entitlement_id}")
        self._parts = state.get("parts")
        self._state = {int(k): (int(v[0]), int(v[1])) for k, v in (state.get("positions") or {}).items()}

    def observe(self, item: Any) -> None:
        """Count a record (or a collated batch of them) as consumed by the loop."""
        if isinstance(item, dict) and "_part" in item:
            parts, starts, offsets = item["_part"], item["_start"], item["_offset"]
            if isinstance(offsets, int):
                parts, starts, offsets = [parts], [starts], [offsets]
            for p, s, o in zip(_ints(parts), _ints(starts), _ints(offsets), strict=True):
                if p not in self._state or o + 1 > self._state[p][1]:
                    self._state[p] = (s, o + 1)
        elif isinstance(item, list | tuple):
            for x in item:
                self.observe(x)

    def track(self, loader: Iterable) -> Iterator:
        """Wrap a DataLoader: yields its items unchanged and records what the loop consumed."""
        workers = max(1, int(getattr(loader, "num_workers", 0) or 0))
        if self._parts is None:  # a new stream: one partition per worker and rank
            self._parts = self.world_size * workers
        for item in loader:
            self.observe(item)
            yield item

    # -- iteration ---------------------------------------------------------------------------------
    def _layout(self) -> tuple[int, int]:
        """(this iterator's index, number of iterators): one per DataLoader worker and rank."""
        info = _worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, self.num_workers or 1)
        if info is None and self.num_workers and self.num_workers > 1:
            raise ValueError("num_workers > 1 needs a DataLoader; iterate it through one")
        return self.rank * nw + wid, self.world_size * nw

    def __iter__(self) -> Iterator[dict]:
        me, iterators = self._layout()
        parts = self._parts if self._parts is not None else iterators  # a resumed stream keeps its count
        in_main = _worker_info() is None
        if in_main:
            self._parts = parts
        for part in range(me, parts, iterators):
            yield from self._part(part, parts, in_main)

    def _part(self, part: int, parts: int, in_main: bool) -> Iterator[dict]:
        start, offset = self._state.get(part, (0, 0))
        cursor = str(Cursor(parts, part, start))
        skip = offset - start
        for batch in self.client.batches(self.entitlement_id, cursor, max_tokens=self.max_tokens, parts=parts,
                                         part=part, fmt=self.fmt, read_ahead=self.read_ahead):
            b_start = int(batch.cursor.rsplit(".", 1)[1])
            for i, rec in enumerate(batch.records()):
                if skip > 0:
                    skip -= 1
                    continue
                rec["_part"], rec["_start"], rec["_offset"] = part, b_start, b_start + i
                if in_main:
                    self._state[part] = (b_start, b_start + i + 1)
                yield rec


def _ints(v: Any) -> list[int]:
    if hasattr(v, "tolist"):
        v = v.tolist()
    return [int(x) for x in v]
