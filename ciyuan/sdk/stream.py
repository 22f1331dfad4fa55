"""``TokenStream``: an entitlement as an iterable of records (or token blocks) for a training loop, resumable exactly.

With torch installed it is a ``torch.utils.data.IterableDataset``; without torch it is a plain
iterable with the same behaviour. Under a DataLoader with N workers (times ``world_size`` ranks)
worker ``k`` streams partition ``k`` of the selection, and partitions are disjoint contiguous
slices, so no record is seen twice.

What it yields, so the DataLoader's default collate works:

* records as flat dicts without ``None``: ``id, modality, text, media, media_ref, meta, tokens``
  with a missing ``text``/``media_ref`` as ``""``, missing ``media`` as ``b""``, and ``meta`` as
  its JSON string (``json.loads`` it; a dict would not collate when records' keys differ);
* a record whose media is a blob (``media_ref``) has its bytes fetched into ``media``, checked
  by sha256, unless ``resolve_media=False`` (:mod:`ciyuan.sdk.blobs`); this works in forked
  workers, each with its own connections;
* with ``decode="pil"|"numpy"|"torch"`` media records also carry ``decoded`` (and
  ``sample_rate`` for audio, ``fps`` for video), see :mod:`ciyuan.sdk.media`; sizes differ, so
  batch them with your own ``collate_fn`` (or ``batch_size=None``);
* with ``tokenize=True`` also ``input_ids`` (the listing's own tokenizer, from ``ciyuan.tokens``);
  variable lengths, so batch them with ``pack=`` or your own padding ``collate_fn``;
* with ``pack=L`` blocks ``{"input_ids": [L token ids]}`` (a tensor with torch): the documents'
  tokens concatenated in stream order with ``eos_id`` after each document (default: the first id
  past the tokenizer's ordinary vocabulary, which it never produces); a partition's last partial
  block is dropped;
* with ``windows={key: [offsets in s]}`` (episode records): one training window per frame (every
  ``frame_step``-th), state/action columns and decoded camera frames at those offsets with
  ``{key}_is_pad`` masks, as LeRobot's ``delta_timestamps`` (:mod:`ciyuan.sdk.windows`); the
  camera blobs come through the same signed media URLs; ``_skip`` is then the next frame;
* every item carries its position: ``_part``, ``_from`` (the batch start to re-read from),
  ``_next`` (the ordinal of the next record) and ``_skip`` (tokens of that record already packed).

``shuffle=W`` (with ``seed``) shuffles within consecutive windows of W records of a partition, by
a permutation seeded by ``(seed, partition, window)``: the same seed gives the same order, and a
resume continues it exactly. (Workers must then hold W records, and acknowledge a batch once its
records entered the window: only ``state_dict()`` resumes exactly.)

Exact resume: the loop's view of progress is what it consumed, not what workers prefetched, so
the state is updated from the items the loop received: iterating in the main process, the
DataLoader from :meth:`TokenStream.loader` (which does it by itself), or :meth:`track` around a
DataLoader you built. :meth:`state_dict` then says per partition where to re-read from and which
ordinal (and token of it) comes next; re-reading records already paid is a free replay, so resuming
never pays twice, and the partial pack is rebuilt from its record.

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

import json
import random
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ciyuan.delivery.metering import Cursor
from ciyuan.errors import CiyuanError, InvalidInput
from ciyuan.sdk.client import DEFAULT_MAX_TOKENS, Client

try:  # torch is optional: subclass its IterableDataset only when it is there
    import torch
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info as _worker_info
except ImportError:  # pragma: no cover - exercised on machines without torch
    torch = None  # type: ignore[assignment]
    _Base = object  # type: ignore[assignment,misc]

    def _worker_info():  # type: ignore[no-redef]
        return None


POSITION_KEYS = ("_part", "_from", "_next", "_skip")
_EMPTY: dict[str, Any] = {"media": b"", "meta": "{}", "tokens": 0}


def collatable(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A record the default collate accepts: no None (``""``, ``b""``, ``"{}"``, 0), meta as JSON text."""
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if v is None:
            v = _EMPTY.get(k, "")
        elif k == "meta" and not isinstance(v, str):
            v = json.dumps(v, ensure_ascii=False, sort_keys=True)
        out[k] = v
    return out


class TokenStream(_Base):  # type: ignore[misc,valid-type]
    """Records (or packed token blocks) of an entitlement, split across DataLoader workers and ranks."""

    def __init__(self, client: Client | str, entitlement_id: str, key: str | None = None, *,
                 max_tokens: int = DEFAULT_MAX_TOKENS, fmt: str = "arrow", rank: int = 0, world_size: int = 1,
                 num_workers: int | None = None, read_ahead: bool = False, shuffle: int = 0, seed: int = 0,
                 tokenize: bool = False, pack: int | None = None, eos_id: int | None = None,
                 tokenizer: str | None = None, decode: str | None = None, resolve_media: bool = True,
                 windows: Mapping[str, Any] | None = None, frame_step: int = 1):
        super().__init__()
        from ciyuan.sdk.windows import check_windows

        self.windows = check_windows(windows)  # episode records -> one training window per frame
        self.frame_step = int(frame_step)
        if self.windows and (decode or tokenize or pack) or self.frame_step < 1:
            raise ValueError("windows= gives frame windows (no decode=, tokenize=, pack=); frame_step >= 1")
        if shuffle < 0 or (pack is not None and pack < 1):
            raise ValueError("shuffle must be >= 0 and pack >= 1")
        from ciyuan.sdk.media import check_decode

        self.decode = check_decode(decode)  # media as PIL / numpy / torch in ``decoded`` (ciyuan.sdk.media)
        self.resolve_media = bool(resolve_media)  # a blob's bytes into ``media`` (ciyuan.sdk.blobs)
        if decode and pack:
            raise ValueError("decode= gives records; pack= gives token blocks: choose one")
        self.client = client if isinstance(client, Client) else Client(client, key)
        self.entitlement_id = entitlement_id
        self.max_tokens = max_tokens
        self.fmt = fmt
        self.rank, self.world_size = rank, world_size
        self.num_workers = num_workers
        self.read_ahead = read_ahead
        self.shuffle, self.seed = int(shuffle), int(seed)
        self.pack = pack
        self.tokenize = bool(tokenize or pack)
        self.eos_id = eos_id
        self.tokenizer = tokenizer  # default: the entitlement's own (its token schedule)
        self._tok: Any = None
        self._parts: int | None = None
        self._state: dict[int, tuple[int, int, int]] = {}  # part -> (re-read from, next ordinal, tokens to skip)

    # -- state -------------------------------------------------------------------------------------
    def _order(self) -> dict:
        out = {"shuffle": self.shuffle, "seed": self.seed if self.shuffle > 1 else 0, "tokenize": self.tokenize,
               "pack": self.pack, "eos_id": self.eos_id if self.pack else None}
        if self.windows:  # only then: states saved before windows existed still load
            out |= {"windows": self.windows, "frame_step": self.frame_step}
        return out

    def state_dict(self) -> dict:
        """Per partition, where to resume: ``positions: {part: [re-read from, next ordinal, tokens to skip]}``."""
        return {
            "entitlement_id": self.entitlement_id,
            "parts": self._parts,
            "order": self._order(),
            "positions": {str(k): list(v) for k, v in sorted(self._state.items())},
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("entitlement_id") not in (None, self.entitlement_id):
            raise ValueError(f"state is for entitlement {state.get('entitlement_id')}, not {self.entitlement_id}")
        order = state.get("order")
        if order is not None and order != self._order():
            raise ValueError(f"state was saved with {order}, this stream is {self._order()}: "
                             "resume with the same shuffle, seed, tokenize, pack and eos_id")
        self._parts = state.get("parts")
        self._state = {}
        for k, v in (state.get("positions") or {}).items():
            v = [int(x) for x in v]
            self._state[int(k)] = (v[0], v[1], v[2] if len(v) > 2 else 0)  # [start, offset]: the older form

    def observe(self, item: Any) -> None:
        """Count an item (or a collated batch of them) as consumed by the loop."""
        if isinstance(item, Mapping) and "_part" in item:
            cols = [item[k] for k in POSITION_KEYS]
            if isinstance(cols[0], int):
                cols = [[c] for c in cols]
            for p, f, n, t in zip(*(_ints(c) for c in cols), strict=True):
                if p not in self._state or (n, t) > self._state[p][1:]:
                    self._state[p] = (f, n, t)
        elif isinstance(item, list | tuple):
            for x in item:
                self.observe(x)

    def _begin(self, workers: int) -> None:
        if self._parts is None:  # a new stream: one partition per worker and rank
            self._parts = self.world_size * max(1, workers)

    def _observed(self, items: Iterable) -> Iterator:
        for item in items:
            self.observe(item)
            yield item

    def track(self, loader: Iterable) -> Iterator:
        """Wrap a DataLoader you built: yields its items unchanged and records what the loop consumed."""
        self._begin(int(getattr(loader, "num_workers", 0) or 0))
        return self._observed(loader)

    def loader(self, batch_size: int | None = 1, *, num_workers: int | None = None, **kw: Any) -> Any:
        """A torch DataLoader over this stream that keeps :meth:`state_dict` current by itself.

        ``num_workers`` defaults to the one given to the stream; other arguments go to DataLoader.
        """
        if torch is None:
            raise InvalidInput("TokenStream.loader needs torch", hint="pip install torch, or iterate the stream")
        nw = (self.num_workers or 0) if num_workers is None else num_workers
        self.num_workers = nw or None
        return _loader_class()(self, batch_size=batch_size, num_workers=nw, **kw)

    # -- iteration ---------------------------------------------------------------------------------
    def _layout(self) -> tuple[int, int]:
        """(this iterator's index, number of iterators): one per DataLoader worker and rank."""
        info = _worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, self.num_workers or 1)
        if info is None and self.num_workers and self.num_workers > 1:
            raise ValueError("num_workers > 1 needs a DataLoader; use ds.loader(...) or iterate it through one")
        return self.rank * nw + wid, self.world_size * nw

    def __iter__(self) -> Iterator[dict]:
        me, iterators = self._layout()
        parts = self._parts if self._parts is not None else iterators  # a resumed stream keeps its count
        in_main = _worker_info() is None
        if in_main:
            self._parts = parts
        for part in range(me, parts, iterators):
            for item in self._items(part, parts):
                if in_main:
                    self._state[part] = (item["_from"], item["_next"], item["_skip"])
                yield item

    def _source(self, part: int, parts: int, reread: int, first: int) -> Iterator[tuple[int, int, dict]]:
        """(offset, batch start, record) of a partition from offset ``first``, asking from batch start ``reread``."""
        cursor = str(Cursor(parts, part, reread))
        for batch in self.client.batches(self.entitlement_id, cursor, max_tokens=self.max_tokens, parts=parts,
                                         part=part, fmt=self.fmt, read_ahead=self.read_ahead):
            b_start = int(batch.cursor.rsplit(".", 1)[1])
            recs = batch.table.to_pylist()
            if self.resolve_media:  # only this batch's records from ``first`` on: the rest were handed on
                self.client.resolve_media(self.entitlement_id, recs[max(0, first - b_start):])
            for i, rec in enumerate(recs):
                if b_start + i >= first:
                    yield b_start + i, b_start, rec

    def _ordered(self, part: int, parts: int, reread: int, nxt: int) -> Iterator[tuple[int, int, dict]]:
        """(ordinal, batch start to re-read from, record) in output order, from ordinal ``nxt``."""
        w = self.shuffle
        if w <= 1:
            yield from self._source(part, parts, reread, nxt)
            return
        k = nxt // w
        skip = nxt - k * w
        window: list[dict] = []
        wfrom = reread

        def emit() -> Iterator[tuple[int, int, dict]]:
            perm = list(range(len(window)))
            random.Random(f"ciyuan-shuffle:{self.seed}:{parts}:{part}:{k}").shuffle(perm)
            for j in range(skip, len(window)):
                yield k * w + j, wfrom, window[perm[j]]

        for _o, b, rec in self._source(part, parts, reread, k * w):
            if not window:
                wfrom = b  # the batch holding the window's first record: where a resume re-reads from
            window.append(rec)
            if len(window) == w:
                yield from emit()
                k, skip, window = k + 1, 0, []
        if window:
            yield from emit()

    def _items(self, part: int, parts: int) -> Iterator[dict]:
        reread, nxt, skip_t = self._state.get(part, (0, 0, 0))
        records = self._ordered(part, parts, reread, nxt)
        if self.windows:
            yield from self._windows(part, records, nxt, skip_t)
            return
        if not self.tokenize:
            if self.decode:
                from ciyuan.sdk.media import decode_record

                for n, f, rec in records:
                    out = decode_record(collatable(rec), self.decode)
                    yield out | {"_part": part, "_from": f, "_next": n + 1, "_skip": 0}
                return
            for n, f, rec in records:
                yield collatable(rec) | {"_part": part, "_from": f, "_next": n + 1, "_skip": 0}
            return
        tok = self._tokenizer()
        if not self.pack:
            for n, f, rec in records:
                ids = tok.encode(rec.get("text") or "")
                out = collatable(rec)
                if self.decode:
                    from ciyuan.sdk.media import decode_record

                    out = decode_record(out, self.decode)
                yield out | {"input_ids": ids, "_part": part, "_from": f, "_next": n + 1, "_skip": 0}
            return
        size, eos, buf = self.pack, self._eos(tok), []
        for n, f, rec in records:
            ids = tok.encode(rec.get("text") or "") + [eos]
            i = skip_t if n == nxt else 0
            while i < len(ids):
                take = min(size - len(buf), len(ids) - i)
                buf.extend(ids[i:i + take])
                i += take
                if len(buf) == size:
                    pos = (n, i) if i < len(ids) else (n + 1, 0)
                    yield {"input_ids": _block(buf), "_part": part, "_from": f, "_next": pos[0], "_skip": pos[1]}
                    buf = []

    def _windows(self, part: int, records: Iterator[tuple[int, int, dict]], nxt: int, skip: int) -> Iterator[dict]:
        """One window per (sampled) frame of each episode; ``_skip`` counts frames of it already handed on."""
        from ciyuan.sdk.windows import BlobCache, episode_windows

        if getattr(self, "_blobs", None) is None:  # per process: a forked worker fetches with its own client
            self._blobs = BlobCache(lambda refs: self.client.attachments(self.entitlement_id, refs))
        for n, f, rec in records:
            first = skip if n == nxt else 0
            meta = json.loads(rec["meta"] or "{}") if isinstance(rec.get("meta"), str) else (rec.get("meta") or {})
            length = int((meta.get("episode") or {}).get("length", 0))
            for i, item in episode_windows(rec, self.windows or {}, self._blobs, start=first, step=self.frame_step,
                                           as_torch=torch is not None):
                nx = i + self.frame_step
                last = nx >= length
                yield item | {"_part": part, "_from": f, "_next": n + 1 if last else n, "_skip": 0 if last else nx}

    # -- tokens ------------------------------------------------------------------------------------
    def _tokenizer(self) -> Any:
        """The listing's tokenizer (the entitlement's token schedule), loaded once per process."""
        if self._tok is None:
            from ciyuan.tokens import get_tokenizer

            name = self.tokenizer or self.client.entitlement(self.entitlement_id)["schedule"]
            try:
                self._tok = get_tokenizer(name)
            except CiyuanError as exc:
                raise InvalidInput(f"tokenize=True: the entitlement's token schedule {name!r} is not a tokenizer "
                                   f"this machine has ({exc})",
                                   hint="pass tokenizer= (a name from `ciyuan tokenizers`) or tokenize=False") from exc
        return self._tok

    def _eos(self, tok: Any) -> int:
        """The id put after each document: ``eos_id``, else the first id past the ordinary vocabulary."""
        if self.eos_id is not None:
            return self.eos_id
        enc = getattr(tok, "encoding", None)
        if enc is not None and hasattr(enc, "n_vocab"):
            return int(enc.n_vocab)
        hf = getattr(tok, "tok", None)
        if hf is not None and hasattr(hf, "get_vocab_size"):
            return int(hf.get_vocab_size(with_added_tokens=True))
        raise InvalidInput(f"tokenizer {getattr(tok, 'name', tok)!r} has no known vocabulary size",
                           hint="pass eos_id= to TokenStream")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_tok", "_blobs")} | {"_tok": None, "_blobs": None}


def _block(ids: list[int]) -> Any:
    return torch.tensor(ids, dtype=torch.long) if torch is not None else list(ids)


_LOADER: type | None = None


def _loader_class() -> type:
    """A DataLoader whose iteration keeps its TokenStream's state (defined once torch is imported)."""
    global _LOADER
    if _LOADER is None:
        from torch.utils.data import DataLoader

        class TokenLoader(DataLoader):
            """``DataLoader`` that records what the loop consumed, so ``dataset.state_dict()`` resumes exactly."""

            def __iter__(self):  # type: ignore[override]
                ds: TokenStream = self.dataset  # type: ignore[assignment]
                ds._begin(self.num_workers)  # before the workers fork: they must agree on the partition count
                return ds._observed(super().__iter__())

            def state_dict(self) -> dict:
                return self.dataset.state_dict()  # type: ignore[attr-defined]

            def load_state_dict(self, state: dict) -> None:
                self.dataset.load_state_dict(state)  # type: ignore[attr-defined]

        _LOADER = TokenLoader
    return _LOADER


def _ints(v: Any) -> list[int]:
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, int):
        return [v]
    return [int(x) for x in v]
