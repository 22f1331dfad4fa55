"""SPARQL on a graph version: results equal rdflib's on the same data; only read-only query forms
run; row, token and time limits hold (a runaway query's worker is killed)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import rdflib
import rdflib.compare
from graphdata import EX, make_graph_version, nquads

from ciyuan.errors import InvalidInput
from ciyuan.knowledge import sparql

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # rdflib's own Dataset internals

P = f"PREFIX ex: <{EX}> PREFIX rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> "

SELECTS = [
    "SELECT ?s ?n WHERE { ?s ex:name ?n }",
    "SELECT ?s ?a WHERE { ?s a ex:Person OPTIONAL { ?s ex:age ?a } }",
    "SELECT ?s WHERE { ?s ex:age ?a FILTER(?a > 30 && ?a < 60) }",
    "SELECT ?n WHERE { ?s ex:name ?n FILTER(lang(?n) = 'zh') }",
    "SELECT ?c (COUNT(?s) AS ?k) WHERE { ?s ex:city ?c } GROUP BY ?c",
    "SELECT (AVG(?a) AS ?m) (MAX(?a) AS ?x) (SUM(?a) AS ?t) WHERE { ?s ex:age ?a }",
    "SELECT ?a ?c WHERE { ?a ex:knows ?b . ?b ex:knows ?c FILTER(?a != ?c) }",
    "SELECT DISTINCT ?p WHERE { ?s ?p ?o } ORDER BY ?p",
    "SELECT ?s WHERE { ?s ex:name ?n FILTER(CONTAINS(?n, 'a')) } ORDER BY ?s LIMIT 3",
    "SELECT ?st WHERE { <http://example.org/person/0> ex:address ?x . ?x ex:street ?st }",
    "SELECT ?t WHERE { GRAPH ex:g1 { ?d ex:title ?t } }",
]
ASKS = ["ASK { ?s ex:age 34 }", "ASK { ?s ex:age 35 }", "ASK { ?s ex:name 'Ada'@en }"]
GRAPHS = [
    "CONSTRUCT { ?b ex:knownBy ?a } WHERE { ?a ex:knows ?b }",
    "CONSTRUCT { ?s ex:label ?n } WHERE { ?s ex:name ?n OPTIONAL { ?s ex:age ?a } FILTER(!BOUND(?a)) }",
    "DESCRIBE <http://example.org/person/3>",
]


@pytest.fixture
def kg(home):
    return make_graph_version()


@pytest.fixture(scope="module")
def ref():
    ds = rdflib.Dataset()
    ds.parse(data=nquads(), format="nquads")
    return ds


def _value(term: dict):
    """A JSON binding as a comparable value (numbers by value: engines differ in decimal spelling)."""
    if term["type"] == "bnode":
        return ("bnode",)
    if term["type"] == "uri":
        return ("uri", term["value"])
    lit = rdflib.Literal(term["value"], lang=term.get("xml:lang"),
                         datatype=rdflib.URIRef(term["datatype"]) if "datatype" in term else None)
    v = lit.toPython()
    if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
        return ("num", round(float(v), 9))
    return ("lit", term["value"], term.get("xml:lang"))


def _rdflib_value(t):
    if t is None:
        return None
    if isinstance(t, rdflib.BNode):
        return ("bnode",)
    if isinstance(t, rdflib.URIRef):
        return ("uri", str(t))
    v = t.toPython()
    if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
        return ("num", round(float(v), 9))
    return ("lit", str(t), t.language)


def _rows(body: dict) -> list[tuple]:
    names = body["head"]["vars"]
    return sorted((tuple(_value(b[n]) if n in b else None for n in names) for b in body["results"]["bindings"]),
                  key=repr)


@pytest.mark.parametrize("q", SELECTS)
def test_select_matches_rdflib(kg, ref, q) -> None:
    r = sparql.query(kg, P + q)
    theirs = ref.query(P + q)
    assert r.body["head"]["vars"] == [str(v) for v in theirs.vars]
    want = sorted((tuple(_rdflib_value(row[v]) for v in theirs.vars) for row in theirs), key=repr)
    assert _rows(r.body) == want
    assert r.rows == len(want) and r.limit == "end" and r.tokens == sum(r.line_tokens) > 0


def test_select_order_is_the_engines(kg, ref) -> None:
    q = P + "SELECT ?p WHERE { ?s ?p ?o } GROUP BY ?p ORDER BY DESC(?p)"
    r = sparql.query(kg, q)
    assert [b["p"]["value"] for b in r.body["results"]["bindings"]] == [str(row[0]) for row in ref.query(q)]


@pytest.mark.parametrize("q", ASKS)
def test_ask_matches_rdflib(kg, ref, q) -> None:
    r = sparql.query(kg, P + q)
    assert r.body["boolean"] == ref.query(P + q).askAnswer
    assert r.media_type == "application/sparql-results+json"


@pytest.mark.parametrize("q", GRAPHS)
def test_construct_and_describe_match_rdflib(kg, ref, q) -> None:
    r = sparql.query(kg, P + q)
    ours = rdflib.Graph().parse(data=r.body, format="nt")
    theirs = rdflib.Graph()
    for t in ref.query(P + q):
        theirs.add(t)
    if q.startswith("DESCRIBE"):  # engines may describe more (CBD); both hold the subject's own triples
        s = rdflib.URIRef(f"{EX}person/3")
        assert set(theirs.triples((s, None, None))) <= set(ours)
        assert set(ours.triples((s, None, None))) == set(theirs.triples((s, None, None)))
    else:
        assert rdflib.compare.isomorphic(ours, theirs)
    assert r.media_type == "application/n-triples"
    assert r.rows == len(ours)


@pytest.mark.parametrize("q,code", [
    ("INSERT DATA { <http://a> <http://b> <http://c> }", "query_refused"),
    ("PREFIX ex: <http://x/> DELETE WHERE { ?s ?p ?o }", "query_refused"),
    ("LOAD <http://example.org/x.ttl>", "query_refused"),
    ("DROP ALL", "query_refused"),
    ("SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }", "query_refused"),
    ("select * where { service silent <http://e/> { ?s ?p ?o } }", "query_refused"),
    ("", "bad_query"),
    ("hello world", "bad_query"),
    ("SELECT ?s WHERE { ?s ?p }", "bad_query"),
])
def test_refused_queries(kg, q, code) -> None:
    with pytest.raises(InvalidInput) as e:
        sparql.query(kg, q)
    assert e.value.code == code and e.value.hint


def test_keywords_inside_strings_iris_and_names_are_not_refused(kg) -> None:
    q = (P + 'SELECT ?s ?service WHERE { ?s ex:name ?service FILTER(?service != "SERVICE INSERT") '
         "FILTER(?s != <http://example.org/SERVICE>) } # DELETE everything")
    assert sparql.query_form(q) == "SELECT"
    assert sparql.query(kg, q).rows == 8


def test_row_and_token_limits_cut_whole_rows(kg) -> None:
    q = P + "SELECT ?s ?p ?o WHERE { ?s ?p ?o } ORDER BY ?s ?p ?o"
    full = sparql.query(kg, q)
    cut = sparql.query(kg, q, max_rows=5)
    assert cut.rows == 5 and cut.truncated and cut.limit == "rows"
    assert cut.body["results"]["bindings"] == full.body["results"]["bindings"][:5]
    budget = sum(full.line_tokens[:7]) + full.line_tokens[7] - 1
    by_tokens = sparql.query(kg, q, max_tokens=budget)
    assert by_tokens.rows == 7 and by_tokens.limit == "tokens" and by_tokens.tokens == sum(full.line_tokens[:7])
    g = sparql.query(kg, P + "CONSTRUCT WHERE { ?s ?p ?o }", max_rows=3)
    assert g.rows == 3 and g.body.count("\n") == 3 and g.truncated


def test_tokens_are_the_lines_counted_under_the_schedule(kg) -> None:
    from ciyuan.tokens import get_tokenizer

    r = sparql.query(kg, P + "CONSTRUCT { ?s ex:name ?n } WHERE { ?s ex:name ?n }",
                     count=sparql.text_counter("cl100k_base"))
    tok = get_tokenizer("cl100k_base")
    assert r.tokens == sum(tok.count_batch(r.body.splitlines(keepends=True)))


def test_runaway_query_is_stopped_and_the_next_one_runs(kg) -> None:
    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }"
    with pytest.raises(sparql.QueryTimeout) as e:
        sparql.query(kg, slow, timeout_s=0.5)
    assert e.value.status == 408 and "stopped" in e.value.message
    assert sparql.query(kg, P + "ASK { ?s ex:age 34 }").body["boolean"] is True


def test_store_is_built_once_and_reused(kg) -> None:
    m1 = sparql.ensure_store(kg)
    assert m1["graph_records"] == 10 and m1["quads"] == 36
    assert sparql.ensure_store(kg) == m1
    assert (sparql.store_dir(kg) / "oxigraph").is_dir()
