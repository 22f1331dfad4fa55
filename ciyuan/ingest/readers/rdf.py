"""RDF graphs (Turtle, N-Triples, N-Quads, TriG, RDF/XML, JSON-LD; ``.gz``/``.zst`` too): graph records.

One reader per format, all over :mod:`ciyuan.knowledge.rdf`: statements are parsed as they stream
and grouped by (graph, subject) into one record each (modality ``graph``). A syntax error is
quarantined at once with file, line and column; N-Triples and N-Quads go on at the next line, the
other formats stop there and keep what was read before (the reason says how much).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import Meter
from ciyuan.knowledge import rdf

_SNIFF = {
    "turtle": (b"@prefix", b"@base", b"PREFIX "),
    "rdfxml": (b"<rdf:RDF", b"xmlns:rdf="),
    "jsonld": (b'"@context"',),
}


class RdfReader:
    """One RDF syntax; records are graph records (docs/knowledge.md, "Graphs")."""

    modality = "graph"

    def __init__(self, name: str):
        self.name = name
        self.suffixes = tuple(ext for ext, f in rdf.SUFFIXES.items() if f == name)

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return any(m in head_bytes for m in _SNIFF.get(self.name, ()))

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        grouper = rdf.Grouper()
        for item in rdf.parse_file(path, self.name):
            if isinstance(item, rdf.ParseError):
                yield Bad(path, item.line, item.reason, item.raw)
            else:
                grouper.add(item)
        with contextlib.suppress(OSError):
            meter(os.path.getsize(path))
        for rec in grouper.records():
            yield Good(path, rec["meta"]["line"], {"id": None, "text": rec["text"],
                                                   "meta": {k: v for k, v in rec["meta"].items() if k != "line"}})


for _name in rdf.FORMATS:
    register(RdfReader(_name))
