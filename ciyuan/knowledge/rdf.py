"""RDF in, graph records out: streaming parsing (pyoxigraph), canonical N-Triples, grouping by subject.

A *graph record* is one subject of one named graph with all its triples (docs/knowledge.md,
"Graphs"): an agent asks about a subject and retrieval returns one, and the curation steps act on
one, so the triples of a subject stay together when a buyer's selection takes it. Its ``text`` is
the canonical N-Triples lines of those triples (N-Quads lines when the graph is a named graph),
sorted, one per line, each newline-terminated; a version's graph is rebuilt from its records'
``text`` alone (:func:`quads_of_text`).

Parsing streams: N-Triples and N-Quads are parsed in blocks of lines and a bad line is reported
(file, line, column) and skipped, the parse going on at the next line; Turtle, TriG, RDF/XML and
JSON-LD cannot resume after a syntax error, so the error says where the file broke and how many
statements were read, and what was read before is kept. Grouping holds at most
``max_in_memory`` statements in RAM; beyond that it spills sorted runs to a scratch folder and
merges them (an external sort by graph and subject), so a file of any size is grouped in bounded
memory (plus one dict entry per distinct blank node of a file, for deterministic relabelling).
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import itertools
import marshal
import os
import re
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyoxigraph as ox
import zstandard

from ciyuan.errors import InvalidInput

# extension (after .gz/.zst) -> format name; names are what ``--format`` takes
FORMATS: dict[str, ox.RdfFormat] = {
    "turtle": ox.RdfFormat.TURTLE,
    "ntriples": ox.RdfFormat.N_TRIPLES,
    "nquads": ox.RdfFormat.N_QUADS,
    "trig": ox.RdfFormat.TRIG,
    "rdfxml": ox.RdfFormat.RDF_XML,
    "jsonld": ox.RdfFormat.JSON_LD,
}
SUFFIXES: dict[str, str] = {
    ".ttl": "turtle", ".turtle": "turtle", ".nt": "ntriples", ".ntriples": "ntriples", ".nq": "nquads",
    ".nquads": "nquads", ".trig": "trig", ".rdf": "rdfxml", ".owl": "rdfxml", ".xml": "rdfxml",
    ".jsonld": "jsonld",
}
LINE_FORMATS = ("ntriples", "nquads")
BLOCK_LINES = 20_000  # N-Triples/N-Quads lines parsed per pyoxigraph call
MAX_IN_MEMORY = 250_000  # statements grouped in RAM before a sorted run is spilled to disk
RAW_KEEP = 64 * 1024


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """One statement read: ``line`` is where it sits (exact for N-Triples/N-Quads; for the other
    formats the line the parser had reached, at or just after the statement's end)."""

    line: int
    quad: ox.Quad
    subject: str  # canonical form of the subject term: ``<iri>`` or ``_:label``
    graph: str | None  # the named graph's IRI (no brackets), None for the default graph
    nt: str  # the canonical N-Triples (or N-Quads, in a named graph) line, without " .\n"


@dataclass(frozen=True, slots=True)
class ParseError:
    """A syntax error: ``fatal`` means the rest of the file could not be read (non-line formats);
    ``statements`` is how many statements were read before it. ``raw`` is the bad line, when known."""

    source: str
    line: int
    column: int
    message: str
    raw: bytes
    fatal: bool
    statements: int

    @property
    def reason(self) -> str:
        """The quarantine reason: file, line and column, and what happened to the rest."""
        where = f"{os.path.basename(self.source)} line {self.line} column {self.column}"
        if self.fatal:
            return (f"RDF syntax error: {where}: {self.message}; the file cannot be read past this point "
                    f"({self.statements} statement(s) read before it were kept)")
        return f"RDF syntax error: {where}: {self.message}; the line was skipped"


def format_of(path: str, fmt: str | None = None) -> str:
    """The RDF format name of ``path``: ``fmt`` when given, else from its extension (ignoring .gz/.zst)."""
    if fmt:
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown RDF format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
        return fmt
    name = os.path.basename(path).lower()
    for comp in (".gz", ".gzip", ".zst", ".zstd"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    ext = os.path.splitext(name)[1]
    if ext not in SUFFIXES:
        raise InvalidInput(f"{path}: cannot tell the RDF format from the extension {ext or '(none)'!r}",
                           hint=f"rename it to one of {', '.join(SUFFIXES)} or pass --format")
    return SUFFIXES[ext]


def _open(path: str) -> IO[bytes]:
    """``path`` opened for binary reading, decompressed when it starts with gzip or zstd magic."""
    f = open(path, "rb")  # noqa: SIM115 - handed to the caller, who closes it
    head = f.read(4)
    f.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(f, closefd=True)  # type: ignore[return-value]
    return f


class _LineCounter:
    """Hands the parser one line per read, so the line it has reached is known at each statement."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        self.lines = 0
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=8)  # the last lines, to place an error

    def read(self, n: int = -1) -> bytes:
        line = self.f.readline(n if n and n > 0 else -1)
        if line:
            self.recent.append((self.lines + 1, line))
        if line.endswith(b"\n"):
            self.lines += 1
        return line

    def place(self, message: str) -> tuple[int, int]:
        """Line and column of an error that carries none (RDF/XML): where the fragment the message
        quotes (`` `...` ``) last occurs among the lines just read; else the line reached, column 0."""
        for frag in reversed(re.findall(r"`([^`]+)`", message)):
            needle = frag.encode("utf-8", "replace")
            for lineno, raw in reversed(self.recent):
                col = raw.find(needle)
                if col >= 0:
                    return lineno, len(raw[:col].decode("utf-8", "replace")) + 1
        return max(1, self.lines), 0


class _Labels:
    """Deterministic blank-node labels: the n-th distinct blank node of a file is ``_:b<tag>x<n>``
    (pyoxigraph gives anonymous nodes random ids, which would make record ids differ run to run;
    the tag keeps nodes of different files apart)."""

    def __init__(self, source: str):
        self.tag = hashlib.sha256(os.path.basename(source).encode()).hexdigest()[:8]
        self.seen: dict[str, ox.BlankNode] = {}

    def node(self, b: ox.BlankNode) -> ox.BlankNode:
        got = self.seen.get(b.value)
        if got is None:
            got = self.seen[b.value] = ox.BlankNode(f"b{self.tag}x{len(self.seen)}")
        return got

    def quad(self, q: ox.Quad) -> ox.Quad:
        s, o, g = q.subject, q.object, q.graph_name
        bs, bo, bg = isinstance(s, ox.BlankNode), isinstance(o, ox.BlankNode), isinstance(g, ox.BlankNode)
        if not (bs or bo or bg):
            return q  # the common case: nothing to relabel, no new quad
        return ox.Quad(self.node(s) if bs else s, q.predicate, self.node(o) if bo else o, self.node(g) if bg else g)


def _statement(q: ox.Quad, line: int) -> ParsedStatement:
    nt = str(q)
    g = q.graph_name
    graph = None if isinstance(g, ox.DefaultGraph) else (g.value if isinstance(g, ox.NamedNode) else str(g))
    # the subject is the line's first term, and neither an IRI nor a blank-node label holds a space
    return ParsedStatement(line, q, nt[: nt.index(" ")], graph, nt)


def _error_position(exc: SyntaxError) -> tuple[int, int]:
    line = exc.lineno or 0
    col = exc.offset or 0
    return line, col


def _message(exc: SyntaxError) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    if text.startswith("Parser error at line "):
        _, _, text = text.partition(": ")
    return text


def parse_file(path: str, fmt: str | None = None, *, base_iri: str | None = None,
               relabel_blank_nodes: bool = True) -> Iterator[ParsedStatement | ParseError]:
    """Every statement of ``path`` in file order, and a :class:`ParseError` for each syntax error.

    Never raises for a syntax error; raises :class:`InvalidInput` for an unknown format and
    ``OSError`` for a file that cannot be opened. Blank nodes get deterministic labels per file
    (``relabel_blank_nodes``) so the same file always gives the same records.
    """
    name = format_of(path, fmt)
    labels = _Labels(path) if relabel_blank_nodes else None
    with _open(path) as f:
        if name in LINE_FORMATS:
            yield from _parse_lines(path, f, FORMATS[name], base_iri, labels)
        else:
            yield from _parse_stream(path, f, FORMATS[name], base_iri, labels)


def _parse_stream(path: str, f: IO[bytes], rdf_format: ox.RdfFormat, base_iri: str | None,
                  labels: _Labels | None) -> Iterator[ParsedStatement | ParseError]:
    counter = _LineCounter(f)
    n = 0
    try:
        for q in ox.parse(counter, rdf_format, base_iri=base_iri):
            n += 1
            yield _statement(labels.quad(q) if labels else q, max(1, counter.lines))
    except SyntaxError as exc:
        line, col = _error_position(exc)
        if not line:
            line, col = counter.place(_message(exc))
        raw = next((r for ln, r in counter.recent if ln == line), b"")[:RAW_KEEP].rstrip(b"\r\n")
        yield ParseError(path, line, col, _message(exc), raw, True, n)
    except (OSError, EOFError, zstandard.ZstdError) as exc:  # a cut or corrupt compressed stream
        yield ParseError(path, counter.lines + 1, 0, f"the file could not be read further: {exc}", b"", True, n)


def _statement_lines(lines: list[bytes]) -> list[int]:
    """Indexes of the lines that hold a statement (N-Triples/N-Quads: at most one per line)."""
    out = []
    for i, raw in enumerate(lines):
        s = raw.strip()
        if s and not s.startswith(b"#"):
            out.append(i)
    return out


def _parse_lines(path: str, f: IO[bytes], rdf_format: ox.RdfFormat, base_iri: str | None,
                 labels: _Labels | None) -> Iterator[ParsedStatement | ParseError]:
    """Blocks of lines through one parser call each; after a bad line the block is parsed again
    from the next line, so one error costs one line."""
    first_line = 1
    n = 0
    while True:
        try:
            block = list(itertools.islice(f, BLOCK_LINES))
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            yield ParseError(path, first_line, 0, f"the file could not be read further: {exc}", b"", True, n)
            return
        if not block:
            return
        start = 0  # index in block where parsing resumes
        while start < len(block):
            part = block[start:]
            where = _statement_lines(part)
            k = 0
            try:
                for q in ox.parse(b"".join(part), rdf_format, base_iri=base_iri):
                    line = first_line + start + (where[k] if k < len(where) else len(part) - 1)
                    k += 1
                    n += 1
                    yield _statement(labels.quad(q) if labels else q, line)
                start = len(block)
            except SyntaxError as exc:
                rel, col = _error_position(exc)
                rel = max(1, rel)
                bad = start + rel - 1
                raw = block[bad][:RAW_KEEP] if bad < len(block) else b""
                yield ParseError(path, first_line + bad, col, _message(exc), raw.rstrip(b"\r\n"), False, n)
                start = bad + 1
        first_line += len(block)


# --------------------------------------------------------------------------- canonical form


def canonical_line(quad: ox.Quad) -> str:
    """The canonical N-Triples line of ``quad`` (N-Quads when it sits in a named graph), with its
    terminating `` .\\n``: IRIs as written (RDF compares IRIs character by character, so only the
    curation step changes them, and only in the safe ways it lists), literals as RDF 1.1 says
    (``xsd:string`` implicit, language tags lower case, only the needed escapes)."""
    return f"{quad} .\n"


def canonical_ntriples(quads: Iterable[ox.Quad | ParsedStatement]) -> str:
    """Sorted canonical lines of ``quads``, each newline-terminated; duplicates are kept (the
    duplicate-triple indicator counts them and the curation step removes them)."""
    lines = [f"{q.nt if isinstance(q, ParsedStatement) else q} .\n" for q in quads]
    lines.sort()
    return "".join(lines)


def quads_of_text(text: str, *, source: str = "record") -> list[ox.Quad]:
    """The quads of a graph record's ``text`` (N-Triples or N-Quads lines); what rebuilds a graph."""
    try:
        return list(ox.parse(text.encode("utf-8"), ox.RdfFormat.N_QUADS))
    except SyntaxError as exc:
        line, col = _error_position(exc)
        raise InvalidInput(f"{source}: line {line} column {col} of the graph record is not N-Quads: "
                           f"{_message(exc)}", hint="re-ingest the source; records' text must be canonical") from None


def dataset_of_records(records: Iterable[dict]) -> ox.Dataset:
    """An in-memory dataset of every quad of ``records`` (graph records); for small versions and tests."""
    ds = ox.Dataset()
    for r in records:
        for q in quads_of_text(r.get("text") or "", source=f"record {r.get('id')}"):
            ds.add(q)
    return ds


# --------------------------------------------------------------------------- grouping into records


def _spill(rows: list[tuple[str, str, str, int]], folder: str) -> str:
    rows.sort()
    fd, name = tempfile.mkstemp(prefix="run-", suffix=".marshal", dir=folder)
    with os.fdopen(fd, "wb") as f:
        for i in range(0, len(rows), 10_000):
            marshal.dump(rows[i : i + 10_000], f)
    return name


def _read_run(name: str) -> Iterator[tuple[str, str, str, int]]:
    with open(name, "rb") as f:
        while True:
            try:
                chunk = marshal.load(f)
            except EOFError:
                return
            yield from chunk


class Grouper:
    """Collects statements and gives them back as graph records (see :func:`graph_records`); a
    reader feeds it while it reports syntax errors as they come."""

    def __init__(self, *, source: str | None = None, max_in_memory: int = MAX_IN_MEMORY,
                 scratch: str | None = None):
        self.source = source
        self.max_in_memory = max(1, max_in_memory)
        self.scratch = scratch
        self.rows: list[tuple[str, str, str, int]] = []
        self.runs: list[str] = []
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.statements = 0

    def add(self, st: ParsedStatement) -> None:
        self.statements += 1
        self.rows.append((st.graph or "", st.subject, st.nt, st.line))
        if len(self.rows) >= self.max_in_memory:
            self._spill()

    def _spill(self) -> None:
        if self.tmp is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="ciyuan-rdf-", dir=self.scratch)
        self.runs.append(_spill(self.rows, self.tmp.name))
        self.rows = []

    def records(self) -> Iterator[dict]:
        """The records, sorted by graph then subject; the scratch runs are removed at the end."""
        try:
            if self.runs:
                if self.rows:
                    self._spill()
                merged: Iterator[tuple[str, str, str, int]] = heapq.merge(*(_read_run(r) for r in self.runs))
            else:
                self.rows.sort()
                merged, self.rows = iter(self.rows), []
            for (graph, subject), group in itertools.groupby(merged, key=lambda r: (r[0], r[1])):
                lines = []
                first = None
                for _, _, nt, line in group:
                    lines.append(nt)
                    first = line if first is None else min(first, line)
                meta: dict[str, Any] = {"subject": subject, "graph": graph or None, "triples": len(lines)}
                if self.source is not None:
                    meta["source"] = self.source
                meta["line"] = first
                yield {"id": None, "modality": "graph", "text": "".join(f"{x} .\n" for x in lines), "meta": meta}
        finally:
            if self.tmp is not None:
                self.tmp.cleanup()
                self.tmp = None
            self.runs = []


def graph_records(statements: Iterable[ParsedStatement], *, source: str | None = None,
                  max_in_memory: int = MAX_IN_MEMORY, scratch: str | None = None) -> Iterator[dict]:
    """Group ``statements`` into graph records, one per (graph, subject), sorted by graph then subject.

    A record is ``{"id": None, "modality": "graph", "text", "meta"}`` with ``meta = {"subject",
    "graph", "triples", "source", "line"}`` (``line``: the first line of the subject's statements;
    ``source`` omitted when None, for ingest to fill in); the id is left to the version builder,
    which derives it from the content. Up to ``max_in_memory`` statements are grouped in RAM; more
    spill sorted runs into ``scratch`` (a temporary folder by default) that are merged.
    """
    grouper = Grouper(source=source, max_in_memory=max_in_memory, scratch=scratch)
    for st in statements:
        grouper.add(st)
    yield from grouper.records()


def file_records(path: str, fmt: str | None = None, *, source: str | None = None,
                 max_in_memory: int = MAX_IN_MEMORY) -> tuple[list[ParseError], Iterator[dict]]:
    """Convenience for tools and tests: parse ``path`` and group it; errors are collected as the
    records stream (the list fills while the iterator runs)."""
    errors: list[ParseError] = []

    def good() -> Iterator[ParsedStatement]:
        for item in parse_file(path, fmt):
            if isinstance(item, ParseError):
                errors.append(item)
            else:
                yield item

    return errors, graph_records(good(), source=source, max_in_memory=max_in_memory)
