"""Executors: run a canonical recipe over a version's shards, shard by shard, locally or on Ray.

Over 500 lines because the local pool and the Ray path share one stage planner, one shard job and
one resume check, and cutting them apart would split the invariant that both give the same version id.

The recipe is cut into *stages* at every global (dedup) step. A stage reads each input shard as a
stream of batches, applies the global step's plan (if the stage starts with one) and the per-record
steps after it, and writes one intermediate shard plus its statistics into a work folder. Between
stages, the global step's scan rounds read the previous stage's shards and the driver reduces the
parts into a plan. Scans write what they learn to a scratch folder and the reduce reads it back
one hash partition at a time (:mod:`ciyuan.curate.scratch`), so memory is a batch per worker
plus a partition and the duplicates found, whatever the corpus size; each shard job loads only
its own shard's part of a plan.

Every shard job is a pure function of (recipe, stage, shard, plans), so the local process pool and
Ray Data give byte-identical intermediate shards, and a killed run can ``resume`` from the shard
files already written (each is published by an atomic rename, statistics last).

Progress: every stage (and every scan round) reports :class:`ProgressEvent` with its record and
shard totals (from the Parquet footers) up front, then records read batch by batch inside each
shard and shards finished. In-process jobs call the driver's tracker directly; jobs in worker
processes or Ray tasks write their count to a file per shard that a driver thread reads. Progress
never touches what a job writes, so it cannot change a version id.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ciyuan.canonical import canonical_json
from ciyuan.curate import pieces
from ciyuan.curate.pieces import Input
from ciyuan.curate.recipes import build_steps
from ciyuan.curate.steps import REJECTED, GlobalStep, StepStats
from ciyuan.store import memory

BATCH_ROWS = 1024
BATCH_BYTES = 8 << 20  # a batch also ends at this many bytes of text and media (see _by_bytes)
_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("text", pa.large_string()),
        pa.field("media", pa.large_binary()),
        pa.field("media_ref", pa.string()),
        pa.field("meta", pa.large_string()),
        pa.field("tokens", pa.string()),
        pa.field("rejected", pa.string()),
    ]
)

PROGRESS_POLL_S = 0.5  # how often the driver reads the progress files of worker processes


@dataclass(frozen=True)
class ProgressEvent:
    """Where a curation run is: one stage (a group of steps, a scan round, or writing the version).

    ``records`` is the number of records the stage reads (from the Parquet footers, so known
    before it starts); ``records_done`` counts them as shard jobs read them, in steps of a batch,
    so a stage over one big shard moves too. A stage's last event has both counts complete.
    """

    stage: str
    shards_done: int
    shards: int
    records_done: int
    records: int


Progress = Callable[[ProgressEvent], None]


class StageTracker:
    """Per-record and per-shard counts of one stage, turned into :class:`ProgressEvent` calls."""

    def __init__(self, on_progress: Progress | None, stage: str, rows: list[int]):
        self.on_progress, self.stage, self.rows = on_progress, stage, rows
        self.read = [0] * len(rows)
        self.finished: set[int] = set()
        self.lock = threading.Lock()

    def record(self, shard: int, n: int) -> None:
        with self.lock:
            if shard in self.finished or n <= self.read[shard]:
                return
            self.read[shard] = min(n, self.rows[shard])
            self._emit()

    def finish(self, shard: int) -> None:
        with self.lock:
            self.finished.add(shard)
            self.read[shard] = self.rows[shard]
            self._emit()

    def start(self) -> None:
        with self.lock:
            self._emit()

    def _emit(self) -> None:
        if self.on_progress:
            self.on_progress(
                ProgressEvent(self.stage, len(self.finished), len(self.rows), sum(self.read), sum(self.rows))
            )


# In-process runs (one worker) report records straight to the driver's tracker; worker processes
# write their count to a small file per shard that a driver thread reads every PROGRESS_POLL_S.
_LOCAL_TICK: Callable[[int, int], None] | None = None


def _report(job: dict, n: int) -> None:
    if _LOCAL_TICK is not None:
        _LOCAL_TICK(job["shard"], n)
    elif job.get("progress"):
        with contextlib.suppress(OSError):  # progress is advisory
            Path(job["progress"]).write_text(str(n), encoding="ascii")


def _counted(records: Iterator[dict], job: dict) -> Iterator[dict]:
    """Pass records through, reporting how many were read after every batch; between batches the
    memory the last one freed goes back to the system (:mod:`ciyuan.store.memory`), so a worker's
    resident set stays that of a batch however long its shard is."""
    for n, rec in enumerate(records, 1):
        if n % BATCH_ROWS == 0:
            _report(job, n)
            memory.release()
        yield rec


class _Watch:
    """While a stage runs, read its shard jobs' progress files into its tracker (a daemon thread)."""

    def __init__(self, tracker: StageTracker, files: dict[int, str]):
        self.tracker, self.files = tracker, files
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Watch:
        if self.files and self.tracker.on_progress:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        for f in self.files.values():
            Path(f).unlink(missing_ok=True)

    def _run(self) -> None:
        while not self.stop.wait(PROGRESS_POLL_S):
            for shard, f in self.files.items():
                try:
                    n = int(Path(f).read_text(encoding="ascii") or 0)
                except (OSError, ValueError):
                    continue
                self.tracker.record(shard, n)


class _Local:
    """Route in-process reports of one stage to its tracker."""

    def __init__(self, tracker: StageTracker):
        self.tracker = tracker

    def __enter__(self) -> _Local:
        global _LOCAL_TICK
        _LOCAL_TICK = self.tracker.record if self.tracker.on_progress else None
        return self

    def __exit__(self, *exc: object) -> None:
        global _LOCAL_TICK
        _LOCAL_TICK = None


@dataclass
class Stage:
    """Steps run together over one shard: an optional global step's filter, then per-record steps."""

    index: int
    global_step: int | None  # index in the recipe of the global step whose plan this stage applies
    steps: list[int] = field(default_factory=list)  # recipe indices, in order

    def label(self, recipe: dict) -> str:
        idx = ([self.global_step] if self.global_step is not None else []) + self.steps
        return ", ".join(recipe["steps"][i]["step"] for i in idx) or "read"


def plan_stages(recipe: dict) -> list[Stage]:
    """Cut the recipe at each global step: [a, b, G1, c, G2] -> [a, b] | G1, c | G2."""
    steps = build_steps(recipe)
    stages = [Stage(0, None)]
    for i, step in enumerate(steps):
        if isinstance(step, GlobalStep):
            stages.append(Stage(len(stages), i))
        else:
            stages[-1].steps.append(i)
    return stages


# shard io -----------------------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return canonical_json(obj, default=str)


_ALWAYS = ("id", "modality", "rejected")  # what routing a record needs, whatever a reader asks for


def _by_bytes(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each batch, cut into row slices of at most about ``BATCH_BYTES``: a batch is a number of
    rows, and 1,024 long documents in a row can weigh a hundred times 1,024 short ones, so memory
    would follow the heaviest run of documents in the input (which grows with the input) instead of
    a batch's bytes."""
    for batch in batches:
        parts = -(-batch.nbytes // BATCH_BYTES)
        if parts <= 1:
            yield batch
            continue
        step = -(-batch.num_rows // parts)
        for lo in range(0, batch.num_rows, step):
            yield batch.slice(lo, step)


def read_shard(path: Input, source: bool, columns: list[str] | None = None) -> Iterator[dict]:
    """Records of a source shard (store format, or a :class:`~ciyuan.curate.pieces.Piece` of one)
    or an intermediate shard, batch by batch.

    ``columns`` limits what is read of an intermediate shard (a scan that needs only the text
    skips decoding meta and token counts); fields not read are absent or empty.
    """
    from ciyuan.store.records import from_batch

    cols = None if source or columns is None else list(dict.fromkeys([*_ALWAYS, *columns]))
    file, groups = pieces.path_and_groups(path)
    with open(file, "rb") as fh:
        pf = pq.ParquetFile(fh, pre_buffer=False)  # pre-buffering keeps every row group read until closed
        for batch in _by_bytes(pf.iter_batches(batch_size=BATCH_ROWS, row_groups=groups, columns=cols)):
            if source:
                for rec in from_batch(batch):
                    rec.pop("_rejected", None)
                    yield rec
                continue
            data = batch.to_pydict()
            none = [None] * batch.num_rows
            text, media, media_ref = data.get("text", none), data.get("media", none), data.get("media_ref", none)
            meta, tokens = data.get("meta", none), data.get("tokens", none)
            for i in range(batch.num_rows):
                rec = {
                    "id": data["id"][i],
                    "modality": data["modality"][i],
                    "text": text[i],
                    "media": media[i],
                    "media_ref": media_ref[i],
                    "meta": json.loads(meta[i] or "{}"),
                    "tokens": json.loads(tokens[i] or "{}"),
                }
                if data["rejected"][i]:
                    rec[REJECTED] = json.loads(data["rejected"][i])
                yield rec


def _weight(rec: dict) -> int:
    """What a record weighs in a batch: its text's characters and its inline media bytes."""
    return len(rec.get("text") or "") + len(rec.get("media") or b"")


class _ShardWriter:
    """An intermediate shard written batch by batch and published by an atomic rename on close.

    Intermediate shards are scratch, read back once or twice by the next stage: lz4 costs a
    fraction of zstd's CPU for them (the version's own shards stay zstd).
    """

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_suffix(".tmp")
        self.writer = pq.ParquetWriter(str(self.tmp), _SCHEMA, compression="lz4")
        self.buf: list[dict] = []
        self.rows = 0
        self.size = 0

    def add(self, rec: dict) -> None:
        self.buf.append(rec)
        self.rows += 1
        self.size += _weight(rec)
        if len(self.buf) >= BATCH_ROWS or self.size >= BATCH_BYTES:  # row groups bounded in bytes too
            self._flush()

    def _flush(self) -> None:
        buf = self.buf
        if not buf:
            return
        cols = {
            "id": [r["id"] for r in buf],
            "modality": [r.get("modality") or "text" for r in buf],
            "text": [r.get("text") for r in buf],
            "media": [r.get("media") for r in buf],
            "media_ref": [r.get("media_ref") for r in buf],
            "meta": [_dumps(r.get("meta") or {}) for r in buf],
            "tokens": [_dumps(r.get("tokens") or {}) for r in buf],
            "rejected": [_dumps(r[REJECTED]) if REJECTED in r else None for r in buf],
        }
        self.writer.write_table(pa.Table.from_pydict(cols, schema=_SCHEMA))
        buf.clear()
        self.size = 0

    def close(self) -> int:
        self._flush()
        self.writer.close()
        os.replace(self.tmp, self.path)
        return self.rows


def _write_shard(path: Path, records: Iterator[dict]) -> int:
    w = _ShardWriter(path)
    for rec in records:
        w.add(rec)
    return w.close()


def _write_and_scan(path: Path, records: Iterator[dict], step: GlobalStep, shard: int, context: Any) -> tuple:
    """Write the shard and run ``step``'s first scan round over the same records, in one pass.

    The scan pulls; every record it pulls past (rejected, or of a modality the step skips) is
    written too, so the shard is the same as :func:`_write_shard` would make.
    """
    w = _ShardWriter(path)

    def tap() -> Iterator[dict]:
        for rec in records:
            w.add(rec)
            if REJECTED not in rec and step.applies(rec):
                yield rec

    feed = tap()
    part = step.scan(0, feed, shard, context)
    for _ in feed:  # a scan that stopped early still leaves a whole shard
        pass
    return w.close(), part


# jobs (run in worker processes or Ray tasks) -------------------------------------------------------

_CACHE: dict[tuple, Any] = {}


def _steps_for(recipe: dict, key: str) -> list:
    ck = ("steps", key)
    if ck not in _CACHE:
        _CACHE.clear()
        _CACHE[ck] = build_steps(recipe)
    return _CACHE[ck]


def _plan(path: str) -> dict:
    """A shard's plan; not cached, since each shard has its own and a worker sees many."""
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _recount(records: Iterator[dict], tokenizers: list[str]) -> Iterator[dict]:
    """Count tokens again, through the token schedules, for records whose text a step changed.

    Their stored counts are stale, so they are dropped first (a schedule reuses a stored count),
    under the schedule's name and under the column-safe key a source shard gave them
    (``episode_openvla`` for ``episode-openvla``); the counts of unchanged records are keyed by name.
    """
    from ciyuan.store.records import name_token_counts
    from ciyuan.tokens import get_schedule

    buf: list[dict] = []

    def flush() -> Iterator[dict]:
        stale = []
        for r in buf:
            toks = name_token_counts(r.setdefault("tokens", {}), tokenizers)
            if (r.get("meta") or {}).get("curation", {}).get("changed_by"):
                stale.append(r)
                for t in tokenizers:
                    toks.pop(t, None)
        for t in tokenizers if stale else []:
            for r, c in zip(stale, get_schedule(t).count_records(stale), strict=True):
                r["tokens"][t] = int(c)
        yield from buf
        buf.clear()

    size = 0
    for r in records:
        buf.append(r)
        size += _weight(r)
        if len(buf) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield from flush()
            size = 0
    yield from flush()


def stage_job(job: dict) -> dict:
    """Run one stage over one shard; write the shard and its statistics; return the statistics."""
    out = Path(job["output"])
    stats_path = out.with_suffix(".stats.json")
    steps = _steps_for(job["recipe"], job["key"])
    chain: list = []
    if job["global_step"] is not None:
        g = steps[job["global_step"]]
        g.reset_stats()
        g.bind(_plan(job["plan"]))  # after the reset: binding records the plan's summary in the stats
        chain.append(g)
    for i in job["steps"]:
        steps[i].reset_stats()
        chain.append(steps[i])
    records: Iterator[dict] = _counted(read_shard(job["input"], job["source"]), job)
    for s in chain:
        records = s(records)
    if job["recount"]:
        records = _recount(records, job["tokenizers"])
    fused = job.get("scan")
    part = None
    if fused:
        rows, part = _write_and_scan(out, records, steps[fused["global_step"]], job["shard"], fused["context"])
    else:
        rows = _write_shard(out, records)
    result = {"rows": rows, "steps": {s.name: s.reset_stats().to_dict() for s in chain}, "recounted": job["recount"]}
    tmp = stats_path.with_suffix(".tmp")
    tmp.write_text(_dumps(result), encoding="utf-8")
    os.replace(tmp, stats_path)
    return {**result, "scan_part": part} if fused else result


def scan_job(job: dict) -> Any:
    """One scan round of a global step over one shard's live (not rejected) records."""
    step = _steps_for(job["recipe"], job["key"])[job["global_step"]]
    records = read_shard(job["input"], job["source"], step.scan_columns(job["round"]))
    live = step.scan_input(_counted(records, job))
    return step.scan(job["round"], live, job["shard"], job["context"])


# executors ---------------------------------------------------------------------------------------


class Interrupted(RuntimeError):
    """Raised by the test hook that simulates a crash part-way through a run."""


def _pool_context():
    """Fork while this process has no other thread (a worker then starts with the modules already
    imported: about 0.9 CPU s less per worker than spawning, which re-imports pyarrow, pandas,
    numpy and the steps); spawn otherwise, since forking a threaded process can deadlock.

    Shard jobs are pure functions of their job dict, so the start method cannot change a version.
    """
    import multiprocessing as mp

    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        pa.array([], type=pa.string())  # pyarrow imports pandas on its first list conversion: once, here
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _warm(recipe: dict, key: str, tokenizers: list[str], recount: bool) -> None:
    """Build in the driver what every shard job builds on first use, before the workers fork.

    A fork pool starts its processes at the first submitted job (not when it is made), so the
    steps built here (models, tables), the tokenizers of the recount and whatever they import are
    inherited, not rebuilt once per worker. In-process runs need them anyway; Ray workers start
    afresh and build their own, as before.
    """
    for step in _steps_for(recipe, key):
        step.warm()  # models and tables a step loads on first use (langid's model, quality's tables)
    if recount:
        from ciyuan.errors import CiyuanError
        from ciyuan.tokens import get_schedule

        for t in tokenizers:  # load a text schedule's tokenizer; other schedules count no text
            with contextlib.suppress(CiyuanError):  # a missing one fails in the job, as before
                getattr(get_schedule(t), "tokenizer", None)


class LocalExecutor:
    """Processes across cores (a fresh pool per run); in-process with 1 worker."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalExecutor:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=_pool_context())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def map(self, fn: Callable[[dict], Any], jobs: list[dict]) -> Iterator[tuple[int, Any]]:
        """(position, result) as jobs finish (any order)."""
        if self._pool is None:
            for i, job in enumerate(jobs):
                yield i, fn(job)
            return
        futures = {self._pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _ray_run(row: dict) -> dict:
    fn, job = pickle.loads(row["job"])
    return {"pos": row["pos"], "out": pickle.dumps(fn(job))}


class RayExecutor:
    """Ray Data over the shard jobs: a local Ray instance, or the cluster ``RAY_ADDRESS`` names.

    Shard jobs read and write the work folder, so on a multi-machine cluster it must be shared.
    """

    name = "ray"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            from ciyuan.errors import InvalidInput

            raise InvalidInput("the ray executor needs Ray", hint="pip install 'ciyuan[ray]'") from None
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if not os.environ.get("RAY_ADDRESS"):
                kw["num_cpus"] = self.workers
            ray.init(**kw)
            self._started = True
        else:
            self._started = False
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        if self._started:
            ray.shutdown()

    def map(self, fn: Callable[[dict], Any], jobs: list[dict]) -> Iterator[tuple[int, Any]]:
        import ray.data

        if not jobs:
            return
        rows = [{"pos": i, "job": pickle.dumps((fn, job))} for i, job in enumerate(jobs)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        out = ds.map(_ray_run, concurrency=min(self.workers, len(rows)), num_cpus=1)
        for row in out.iter_rows():
            yield int(row["pos"]), pickle.loads(row["out"])


def make_executor(name: str, workers: int | None) -> LocalExecutor | RayExecutor:
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers)
    from ciyuan.errors import InvalidInput

    raise InvalidInput(f"unknown executor {name!r}", hint="use --executor local or --executor ray")


def run_recipe(
    recipe: dict,
    key: str,
    sources: list[str],
    work: Path,
    executor: LocalExecutor | RayExecutor,
    tokenizers: list[str],
    on_progress: Progress | None = None,
    stop_after: int | None = None,
) -> tuple[list[StageShard | FilterShard], list[StepStats]]:
    """Run every stage; return the final shards (in order) and the merged per-step statistics.

    A last stage that only applies a global step's plan is not run here: its shards come back as
    :class:`FilterShard`, applied as the caller reads them (their statistics are merged into the
    returned ones when each is read to the end).
    """
    stages = plan_stages(recipe)
    steps = build_steps(recipe)
    merged = [StepStats(s.name) for s in steps]
    # a big source shard is cut into pieces so that every worker has a part of each stage
    workers = getattr(executor, "workers", 1)
    inputs: list[Input] = pieces.cut(list(sources), 2 * workers if workers > 1 else 1)
    pieces.keep_layout(work, inputs)
    source = True
    done_jobs = 0
    fused: tuple[int, list, Any] | None = None  # (global step, parts, context) of a scan round run in a stage
    # Tokens are recounted in the last stage with per-record steps: only those change text (a global
    # step's plan only marks records), so the counts are final there, and the recount runs in the
    # shard jobs (every worker) instead of in the driver while the version is written.
    recount_at = max((st.index for st in stages if st.steps), default=None)
    if isinstance(executor, LocalExecutor):
        _warm(recipe, key, tokenizers, recount_at is not None)
    for stage in stages:
        if stage.index > 0:
            g = stage.global_step
            assert g is not None
            plan_dir = work / f"plan-{g:02d}"
            if not (plan_dir / "done").exists():
                scratch = work / f"scan-{g:02d}"
                first = fused[1:] if fused is not None and fused[0] == g else None
                if first is None:
                    shutil.rmtree(scratch, ignore_errors=True)
                plan = _run_scans(steps[g], g, recipe, key, inputs, source, str(scratch), executor, on_progress,
                                  first)  # fmt: skip
                _write_plans(steps[g], plan, plan_dir, len(inputs))
                shutil.rmtree(scratch, ignore_errors=True)
        else:
            plan_dir = None
        if stage.index == 0 and not stage.steps:
            continue  # nothing to do before the first global step: it scans the source shards
        final = stage.index == len(stages) - 1
        if final and stage.global_step is not None and not stage.steps:
            # only the plan to apply: done while the version is written, no last shard to write and read
            by_name = {s.step: s for s in merged}
            return [
                FilterShard(
                    {"recipe": recipe, "key": key, "input": inp, "source": source, "global_step": stage.global_step,
                     "plan": str(plan_dir / f"shard-{i:05d}.pkl")},
                    by_name,
                )
                for i, inp in enumerate(inputs)
            ], merged  # fmt: skip
        folder = work / f"stage-{stage.index:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        outputs = [str(folder / f"part-{i:05d}.parquet") for i in range(len(inputs))]
        jobs, results = [], {}
        for i, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
            stats_path = Path(out).with_suffix(".stats.json")
            if stats_path.exists() and Path(out).exists():
                done = json.loads(stats_path.read_text(encoding="utf-8"))
                if done.get("recounted", False) == (stage.index == recount_at):  # else: made before, redo
                    results[i] = done
                    continue
            jobs.append(
                {
                    "recipe": recipe,
                    "key": key,
                    "input": inp,
                    "source": source,
                    "output": out,
                    "global_step": stage.global_step,
                    "steps": stage.steps,
                    "plan": str(plan_dir / f"shard-{i:05d}.pkl") if plan_dir else None,
                    "recount": stage.index == recount_at,
                    "tokenizers": tokenizers,
                    "shard": i,
                }
            )
        # The next global step's first scan round rides along with this stage's jobs (one pass over
        # the records instead of two) when every shard is being made now; a resumed stage scans apart.
        nxt = None if final else stages[stage.index + 1].global_step
        fuse = nxt is not None and not results and not (work / f"plan-{nxt:02d}" / "done").exists()
        label = stage.label(recipe)
        if fuse:
            assert nxt is not None
            scratch = work / f"scan-{nxt:02d}"
            shutil.rmtree(scratch, ignore_errors=True)
            context = steps[nxt].begin(str(scratch), sum(shard_rows(inputs)))
            for job in jobs:
                job["scan"] = {"global_step": nxt, "context": context}
            label = f"{label}, {steps[nxt].name} scan 1"
        tracker = StageTracker(on_progress, label, shard_rows(inputs))
        for i in results:
            tracker.finished.add(i)
            tracker.read[i] = tracker.rows[i]
        tracker.start()
        files = _progress_files(work, f"stage-{stage.index:02d}", jobs)
        with _Watch(tracker, files), _Local(tracker):
            for pos, res in executor.map(stage_job, jobs):
                results[jobs[pos]["shard"]] = res
                done_jobs += 1
                tracker.finish(jobs[pos]["shard"])
                if stop_after is not None and done_jobs >= stop_after:
                    raise Interrupted(f"stopped after {done_jobs} shard job(s), as asked")
        by_name = {s.step: s for s in merged}
        for i in range(len(inputs)):
            for name, d in results[i]["steps"].items():
                by_name[name].merge(StepStats.from_dict(d))
        fused = (nxt, [results[i]["scan_part"] for i in range(len(inputs))], context) if fuse else None
        inputs, source = list(outputs), False
    return [StageShard(p) for p in inputs] if not source else [], merged


class StageShard:
    """A final intermediate shard, read as records."""

    def __init__(self, path: str):
        self.path = path

    def rows(self) -> int:
        return shard_rows([self.path])[0]

    def records(self) -> Iterator[dict]:
        return read_shard(self.path, source=False)


class FilterShard:
    """A shard of a last stage that only applies a global step's plan, run as it is read.

    Why: the stage is cheap (a dict lookup per record; tokens were recounted in an earlier stage's
    jobs), so writing its output as one more intermediate shard only for the caller to read it
    back cost more than the stage itself. The records are the ones :func:`stage_job` would have
    written: the same plan, and the JSON the intermediate shard would have applied to ``meta`` is
    what the version's writer applies anyway (``canonical_json``, ``default=str``). Statistics
    reach ``stats`` when the shard has been read to the end.
    """

    def __init__(self, job: dict, stats: dict[str, StepStats]):
        self.job, self.stats = job, stats

    def rows(self) -> int:
        return shard_rows([self.job["input"]])[0]

    def records(self) -> Iterator[dict]:
        job = self.job
        g = _steps_for(job["recipe"], job["key"])[job["global_step"]]
        g.reset_stats()
        g.bind(_plan(job["plan"]))
        yield from g(read_shard(job["input"], job["source"]))
        self.stats[g.name].merge(StepStats.from_dict(g.reset_stats().to_dict()))


def _write_plans(step: GlobalStep, plan: dict, folder: Path, shards: int) -> None:
    """One plan file per shard (so a shard job loads only its own decisions), then ``done``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        path = folder / f"shard-{i:05d}.pkl"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(step.plan_for(plan, i), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    (folder / "done").write_text("", encoding="utf-8")


def shard_rows(paths: list[Input]) -> list[int]:
    """Records in each shard (or piece of one), from its Parquet footer."""
    return [pieces.rows(p) for p in paths]


def _rows(paths: list[Input]) -> int:
    """Records in the shards, from their Parquet footers (an upper bound on the live ones)."""
    return sum(shard_rows(paths))


def _progress_files(work: Path, name: str, jobs: list[dict]) -> dict[int, str]:
    """Give every job a progress file (worker processes write their record count there)."""
    folder = work / "progress"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for job in jobs:
        path = folder / f"{name}-{job['shard']:05d}"
        path.unlink(missing_ok=True)
        job["progress"] = str(path)
        files[job["shard"]] = str(path)
    return files


def _run_scans(
    step: GlobalStep,
    g: int,
    recipe: dict,
    key: str,
    inputs: list[Input],
    source: bool,
    scratch: str,
    executor: LocalExecutor | RayExecutor,
    on_progress: Progress | None,
    first: tuple[list, Any] | None = None,
) -> dict:
    """The global step's scan rounds and reduces; returns its plan.

    ``first`` is ``(parts, context)`` of a first round already run inside the previous stage.
    """
    rows = shard_rows(inputs)
    if first is None:
        context, round_ = step.begin(scratch, sum(rows)), 0
    else:
        finished, context = step.reduce(0, first[0], first[1])
        if finished:
            return context
        round_ = 1
    while True:
        jobs = [
            {
                "recipe": recipe,
                "key": key,
                "global_step": g,
                "input": p,
                "source": source,
                "shard": i,
                "round": round_,
                "context": context,
            }
            for i, p in enumerate(inputs)
        ]
        parts: list[Any] = [None] * len(jobs)
        tracker = StageTracker(on_progress, f"{step.name} scan {round_ + 1}", rows)
        tracker.start()
        files = _progress_files(Path(scratch).parent, f"scan-{g:02d}-{round_}", jobs)
        with _Watch(tracker, files), _Local(tracker):
            for pos, part in executor.map(scan_job, jobs):
                parts[pos] = part
                tracker.finish(pos)
        finished, context = step.reduce(round_, parts, context)
        round_ += 1
        if finished:
            return context
