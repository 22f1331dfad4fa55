"""Read-only SPARQL over a graph version: a pyoxigraph store beside the version, queried in worker processes.

Why a store per version: a version is immutable, so its store is built once (at publish, or on the
first query) from the version's graph records and reused by every later query; it is rebuilt only
if its manifest (format, version id) does not match. The records' ``text`` (canonical N-Triples, or
N-Quads for a named graph, see docs/knowledge.md) is all it needs, so the store can always be thrown
away and rebuilt.

Why worker processes: a SPARQL query can run for ever (a cross product, a property path over the
whole graph) and pyoxigraph cannot cancel one from Python. Each query runs in a worker process that
holds the store open read-only; the caller waits for the answer up to the query's time limit and,
past it, **kills the worker** (SIGKILL) and starts a fresh one for the next query. A runaway query
thus costs one worker, never the server.

Only ``SELECT``, ``ASK``, ``CONSTRUCT`` and ``DESCRIBE`` are accepted: the query form is read from
the text with strings, IRIs and comments blanked out, so an update (``INSERT``, ``DELETE``, ``LOAD``
...) or a federated ``SERVICE`` (which would make the server fetch a URL) is refused before it
reaches the engine. The engine's own parser then rejects anything else that is not a query.

Results: ``SELECT``/``ASK`` in SPARQL 1.1 JSON, ``CONSTRUCT``/``DESCRIBE`` as N-Triples lines. Their
tokens are counted line by line (see :func:`result_lines`), so a result cut at a row or token limit
is billed exactly for what it holds and a buyer can recount it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from ciyuan.errors import CiyuanError, InvalidInput, NotFound

FORMAT = "ciyuan-sparql-store-v1"
FORMS = ("SELECT", "ASK", "CONSTRUCT", "DESCRIBE")
UPDATES = ("INSERT", "DELETE", "LOAD", "CLEAR", "CREATE", "DROP", "COPY", "MOVE", "ADD", "WITH")
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ROWS = 1000
MAX_ROWS = 100_000
MAX_QUERY_CHARS = 100_000
XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
RDF_LANG_STRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"


class QueryTimeout(CiyuanError):
    """A query stopped at its time limit (its worker was killed); nothing was billed for it."""

    code = "query_timeout"
    status = 408


# -- the query form -----------------------------------------------------------------------------

# strings (long and short, both quotes), IRIs, comments: blanked before keywords are looked for
_BLANK = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""' r"|'''(?:[^'\\]|\\.|'(?!''))*'''"
    r'|"(?:[^"\\\n]|\\.)*"' r"|'(?:[^'\\\n]|\\.)*'"
    r'|<[^<>"{}|^`\\\s]*>'
    r"|#[^\n]*",
    re.S,
)
# a keyword: a word not part of a prefixed name (ex:service) or a variable (?service, $service)
_WORD = re.compile(r"(?<![\w:?$@-])([A-Za-z]+)(?![\w:-])")


def query_form(text: str) -> str:
    """``SELECT``, ``ASK``, ``CONSTRUCT`` or ``DESCRIBE``; anything else is refused with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("the SPARQL query is empty", hint="send a SELECT, ASK, CONSTRUCT or DESCRIBE query",
                           code="bad_query")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"the SPARQL query is {len(text):,} characters, more than {MAX_QUERY_CHARS:,}",
                           hint="send a shorter query", code="bad_query")
    words = [w.upper() for w in _WORD.findall(_BLANK.sub(" ", text))]
    if "SERVICE" in words:
        raise InvalidInput("SERVICE (federated query) is not allowed: the exchange does not fetch other endpoints",
                           hint="query this listing's graph only; remove the SERVICE clause", code="query_refused")
    for w in words:
        if w in ("PREFIX", "BASE"):
            continue
        if w in FORMS:
            return w
        if w in UPDATES:
            raise InvalidInput(f"{w} is a SPARQL update: listings are read-only",
                               hint="use SELECT, ASK, CONSTRUCT or DESCRIBE", code="query_refused")
        break
    raise InvalidInput("not a SPARQL query: it must be SELECT, ASK, CONSTRUCT or DESCRIBE (after PREFIX/BASE)",
                       hint="start the query with SELECT, ASK, CONSTRUCT or DESCRIBE", code="bad_query")


# -- the store beside a version ---------------------------------------------------------------------


def store_dir(version, s=None) -> Path:
    """Where the version's store lives: in the version's folder on local storage, else in the home."""
    from ciyuan.store import fs as sfs

    fs, path = sfs.filesystem(version.location)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) or fs.protocol == "local":
        return Path(path) / "sparql"
    from ciyuan.config import settings

    return (s or settings()).home / "indexes" / "sparql" / version.id


_build_lock = threading.Lock()


def graph_text(records: Iterable[dict]) -> Iterable[str]:
    """The N-Triples/N-Quads text of a version's graph records (other modalities are skipped)."""
    for r in records:
        if r.get("modality") == "graph" and r.get("text"):
            t = r["text"]
            yield t if t.endswith("\n") else t + "\n"


def ensure_store(version, s=None) -> dict:
    """Build the version's store if it is missing or stale, and return its manifest.

    The store is built in a fresh folder and renamed into place, so a reader never sees half of
    one and two builders racing keep one result.
    """
    import pyoxigraph as ox

    root = store_dir(version, s)
    final = root / "oxigraph"
    manifest_path = root / "manifest.json"
    if (m := _read_manifest(manifest_path, version.id)) is not None and final.is_dir():
        return m
    with _build_lock:
        if (m := _read_manifest(manifest_path, version.id)) is not None and final.is_dir():
            return m
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f"build-{uuid.uuid4().hex}"
        t0 = time.perf_counter()
        st = ox.Store(str(tmp))
        records = 0
        chunk: list[str] = []
        size = 0
        for text in graph_text(version.iter_records(columns=["id", "modality", "text"])):
            chunk.append(text)
            records += 1
            size += len(text)
            if size > 8 << 20:
                _load(st, chunk, version)
                chunk, size = [], 0
        if chunk:
            _load(st, chunk, version)
        quads = len(st)
        st.flush()
        del st
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        m = {"format": FORMAT, "version_id": version.id, "graph_records": records, "quads": quads,
             "build_s": round(time.perf_counter() - t0, 3)}
        manifest_path.write_text(json.dumps(m, indent=2) + "\n")
        WORKERS.forget(str(final))
        return m


def has_graph(version) -> bool:
    """Whether the version holds graph records (reads only the modality column)."""
    import pyarrow.compute as pc

    return any(pc.any(pc.equal(b.column("modality"), "graph")).as_py() for b in version.iter_batches(["modality"]))


def _load(st, chunk: list[str], version) -> None:
    import pyoxigraph as ox

    try:
        st.bulk_load(input="".join(chunk), format=ox.RdfFormat.N_QUADS)
    except SyntaxError as exc:
        raise InvalidInput(f"version {version.ref}: a graph record's text is not N-Triples/N-Quads: {exc}",
                           hint="re-ingest the graph; records must hold canonical N-Triples lines",
                           code="bad_graph") from None


def _read_manifest(path: Path, version_id: str) -> dict | None:
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return m if m.get("format") == FORMAT and m.get("version_id") == version_id else None


# -- the worker processes ----------------------------------------------------------------------------


def _term(t) -> dict:
    """A pyoxigraph term as a SPARQL 1.1 JSON binding."""
    import pyoxigraph as ox

    if isinstance(t, ox.NamedNode):
        return {"type": "uri", "value": t.value}
    if isinstance(t, ox.BlankNode):
        return {"type": "bnode", "value": t.value}
    if isinstance(t, ox.Literal):
        d = {"type": "literal", "value": t.value}
        if t.language:
            d["xml:lang"] = t.language
        elif t.datatype.value != XSD_STRING:
            d["datatype"] = t.datatype.value
        return d
    return {"type": "triple", "value": {"subject": _term(t.subject), "predicate": _term(t.predicate),
                                        "object": _term(t.object)}}


def evaluate(store, query: str, max_rows: int) -> dict:
    """Run ``query`` on an open store, reading at most ``max_rows + 1`` rows (to tell a cut result)."""
    import pyoxigraph as ox

    res = store.query(query)
    if isinstance(res, ox.QueryBoolean):
        return {"kind": "ask", "boolean": bool(res)}
    out = []
    if isinstance(res, ox.QuerySolutions):
        names = [v.value for v in res.variables]
        for sol in res:
            vals = [sol[i] for i in range(len(names))]
            out.append([[n, _term(v), str(v)] for n, v in zip(names, vals, strict=True) if v is not None])
            if len(out) > max_rows:
                break
        return {"kind": "select", "vars": names, "rows": out}
    seen: set[str] = set()
    for t in res:  # CONSTRUCT/DESCRIBE: a set of triples
        line = f"{t} .\n"
        if line not in seen:
            seen.add(line)
            out.append(line)
            if len(out) > max_rows:
                break
    return {"kind": "graph", "triples": out}


def _worker_main() -> None:
    """A worker process: open stores read-only as asked and answer queries until its input closes.

    It speaks over its stdin and stdout (``multiprocessing`` connections on those descriptors); its
    own prints go to stderr, so nothing else can write into the answers.
    """
    from multiprocessing.connection import Connection

    import pyoxigraph as ox

    out_fd = os.dup(1)
    os.dup2(2, 1)
    recv, send = Connection(0, writable=False), Connection(out_fd, readable=False)
    send.send(("ready",))
    stores: dict[str, object] = {}
    while True:
        try:
            path, query, max_rows = recv.recv()
        except EOFError:
            return
        try:
            if path not in stores:
                stores[path] = ox.Store.read_only(path)
            send.send(("ok", evaluate(stores[path], query, max_rows)))
        except SyntaxError as exc:
            send.send(("syntax", str(exc)))
        except Exception as exc:  # an engine error is the query's, reported to its caller
            send.send(("error", f"{type(exc).__name__}: {exc}"))


WORKER_START_S = 120  # a worker's start (a fresh interpreter importing pyoxigraph) is not the query's time


@dataclass
class _Worker:
    proc: subprocess.Popen
    send: Connection
    recv: Connection


class WorkerPool:
    """Worker processes for queries; a worker whose query passed its deadline is killed.

    Workers are plain ``python -c`` processes rather than ``multiprocessing`` children, so they never
    re-import the parent's main module (a script, uvicorn, pytest) and start the same under every host.
    """

    def __init__(self, size: int = 2):
        self.size = size
        self._idle: list[_Worker] = []
        self._count = 0
        self._cond = threading.Condition()

    def _spawn(self) -> _Worker:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        proc = subprocess.Popen([sys.executable, "-c", "from ciyuan.knowledge.sparql import _worker_main; "
                                 "_worker_main()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                close_fds=True)
        w = _Worker(proc, Connection(os.dup(proc.stdin.fileno()), readable=False),
                    Connection(os.dup(proc.stdout.fileno()), writable=False))
        proc.stdin.close()
        proc.stdout.close()
        if not w.recv.poll(WORKER_START_S) or w.recv.recv() != ("ready",):
            self._kill(w)
            raise CiyuanError("a SPARQL worker did not start", hint="check that pyoxigraph imports on this machine",
                              code="worker_failed", status=503)
        return w

    def _take(self, deadline: float) -> _Worker:
        with self._cond:
            while not self._idle and self._count >= self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QueryTimeout("every SPARQL worker stayed busy past the query's time limit",
                                       hint="retry in a moment, or raise timeout_s")
                self._cond.wait(left)
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return self._spawn()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _give(self, w: _Worker | None) -> None:
        with self._cond:
            if w is None:
                self._count -= 1
            else:
                self._idle.append(w)
            self._cond.notify()

    def run(self, path: str, query: str, max_rows: int, timeout_s: float) -> dict:
        """The raw answer of ``query`` on the store at ``path``, or :class:`QueryTimeout` (the worker is killed).

        The time limit runs from when a worker has the query (waiting for a free worker counts too).
        """
        w = self._take(time.monotonic() + timeout_s)
        try:
            w.send.send((path, query, max_rows))
            if not w.recv.poll(timeout_s):
                raise QueryTimeout(f"the query ran longer than its time limit of {timeout_s:g} s and was stopped",
                                   hint="add LIMIT, bind a subject or predicate, or raise timeout_s")
            status, *rest = w.recv.recv()
        except BaseException:
            self._kill(w)
            self._give(None)
            raise
        self._give(w)
        if status == "ok":
            return rest[0]
        raise InvalidInput(f"SPARQL {'syntax error' if status == 'syntax' else 'error'}: {rest[0]}",
                           hint="fix the query (SPARQL 1.1: SELECT, ASK, CONSTRUCT or DESCRIBE)", code="bad_query")

    @staticmethod
    def _kill(w: _Worker) -> None:
        try:
            w.proc.kill()
            w.proc.wait(5)
        finally:
            w.send.close()
            w.recv.close()

    def forget(self, path: str) -> None:
        """A store was rebuilt at ``path``: idle workers that had the old one open are retired."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for w in idle:
            self._kill(w)

    def close(self) -> None:
        self.forget("")


WORKERS = WorkerPool(int(os.environ.get("CIYUAN_SPARQL_WORKERS", "2")))


# -- results, limits and tokens ------------------------------------------------------------------------


@dataclass
class Result:
    """A query's answer cut to its limits, with the lines its tokens were counted on."""

    form: str
    body: dict | str  # SPARQL JSON (SELECT/ASK) or N-Triples text (CONSTRUCT/DESCRIBE)
    media_type: str
    rows: int
    tokens: int
    truncated: bool
    limit: str  # end | rows | tokens
    line_tokens: list[int] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"form": self.form, "result": self.body, "media_type": self.media_type, "rows": self.rows,
                "tokens": self.tokens, "truncated": self.truncated, "limit": self.limit}


def result_lines(raw: dict) -> list[str]:
    """The lines a result's tokens are counted on: per SELECT row its bound terms in N-Triples form
    (space-separated, one line), per triple its N-Triples line, and ``true``/``false`` for ASK."""
    if raw["kind"] == "ask":
        return ["true\n" if raw["boolean"] else "false\n"]
    if raw["kind"] == "select":
        return [" ".join(b[2] for b in row) + "\n" for row in raw["rows"]]
    return list(raw["triples"])


def shape(form: str, raw: dict, counts: list[int], max_rows: int, max_tokens: int) -> Result:
    """Cut ``raw`` to ``max_rows`` rows and ``max_tokens`` tokens (whole rows only) and format it."""
    if raw["kind"] == "ask":
        n = counts[0]
        if n > max_tokens:
            raise InvalidInput(f"the answer ({n} tokens) is more than max_tokens {max_tokens}",
                               hint="raise max_tokens", code="token_limit")
        return Result(form, {"head": {}, "boolean": raw["boolean"]}, "application/sparql-results+json", 1, n,
                      False, "end", counts)
    items = raw["rows"] if raw["kind"] == "select" else raw["triples"]
    keep, total, limit = 0, 0, "end"
    for i, n in enumerate(counts):
        if i >= max_rows:
            limit = "rows"
            break
        if total + n > max_tokens:
            limit = "tokens"
            break
        total += n
        keep += 1
    if keep == 0 and limit == "tokens":  # billing nothing for an empty answer would let calls run for ever
        raise InvalidInput(f"the first row of the answer is {counts[0]} tokens, more than the {max_tokens} allowed",
                           hint="raise max_tokens (or buy more tokens if the entitlement is nearly used up)",
                           code="token_limit")
    kept = items[:keep]
    if raw["kind"] == "select":
        body: dict | str = {"head": {"vars": raw["vars"]},
                            "results": {"bindings": [{b[0]: b[1] for b in row} for row in kept]}}
        media = "application/sparql-results+json"
    else:
        body, media = "".join(kept), "application/n-triples"
    return Result(form, body, media, keep, total, limit != "end", limit, counts[:keep])


Counter = Callable[[list[str]], list[int]]


def text_counter(schedule_name: str) -> Counter:
    """Token counts of result lines under a schedule that reads a record's text (else cl100k_base)."""
    from ciyuan.tokens import get_schedule

    sched = get_schedule(schedule_name)
    if "text" not in getattr(sched, "record_fields", ("text",)):
        sched = get_schedule("cl100k_base")
    modality = getattr(sched, "modality", "text")

    def count(lines: list[str]) -> list[int]:
        if not lines:
            return []
        return sched.count_records([{"id": f"l{i}", "modality": modality, "text": t} for i, t in enumerate(lines)])

    return count


def query(version, text: str, *, max_rows: int = DEFAULT_MAX_ROWS, max_tokens: int = 10**12,
          timeout_s: float = DEFAULT_TIMEOUT_S, count: Counter | None = None, s=None) -> Result:
    """Run a read-only query on a graph version within its limits (see module doc)."""
    form = query_form(text)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 1 <= max_rows <= MAX_ROWS:
        raise InvalidInput(f"max_rows {max_rows!r} must be from 1 to {MAX_ROWS:,}", hint="ask for fewer rows",
                           code="bad_limit")
    if not 0 < timeout_s <= 300:
        raise InvalidInput(f"timeout_s {timeout_s!r} must be more than 0 and at most 300",
                           hint="a few seconds is plenty for a lookup", code="bad_limit")
    if not ensure_store(version, s)["graph_records"]:
        raise NotFound(f"version {version.ref} holds no graph records", hint="SPARQL needs a graph listing")
    raw = WORKERS.run(str(store_dir(version, s) / "oxigraph"), text, max_rows, timeout_s)
    lines = result_lines(raw)
    counts = (count or text_counter("cl100k_base"))(lines[: max_rows + 1])
    return shape(form, raw, counts, max_rows, max_tokens)

