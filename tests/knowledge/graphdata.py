"""A small graph made as graph records (one subject with its triples, canonical N-Triples text), the
form the shared decisions of issue 15 define, so these tests depend only on the record form."""

from __future__ import annotations

from collections import defaultdict

EX = "http://example.org/"
XSD = "http://www.w3.org/2001/XMLSchema#"
NAMES = ["Ada", "Bo", "Chen Li", "Dana", "Émile", "Fumiko", "李雷", "Hana"]


def triples(n: int = len(NAMES)) -> list[tuple[str, str, str, str | None]]:
    """(s, p, o, graph) in N-Triples term form; one subject in a named graph, one blank node."""
    out = []
    for i in range(n):
        s = f"<{EX}person/{i}>"
        out.append((s, "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>", f"<{EX}Person>", None))
        out.append((s, f"<{EX}name>", f'"{NAMES[i % len(NAMES)]}"@{"zh" if i == 6 else "en"}', None))
        if i % 3:
            out.append((s, f"<{EX}age>", f'"{20 + 7 * i}"^^<{XSD}integer>', None))
        out.append((s, f"<{EX}knows>", f"<{EX}person/{(i + 1) % n}>", None))
        if i % 2 == 0:
            out.append((s, f"<{EX}city>", f'"{"Beijing" if i % 4 else "Lyon"}"', None))
    out.append(("_:addr0", f"<{EX}street>", '"1 Main St"', None))
    out.append((f"<{EX}person/0>", f"<{EX}address>", "_:addr0", None))
    out.append((f"<{EX}doc/1>", f"<{EX}title>", '"in a named graph"', f"<{EX}g1>"))
    return out


def records(trips=None) -> list[dict]:
    """Graph records: per (graph, subject), its sorted lines, newline-terminated."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for s, p, o, g in trips or triples():
        groups[(g, s)].append(f"{s} {p} {o} {g} .\n" if g else f"{s} {p} {o} .\n")
    out = []
    for i, ((g, s), lines) in enumerate(sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))):
        text = "".join(sorted(lines))
        out.append({"id": f"g{i:06d}", "modality": "graph", "text": text,
                    "meta": {"subject": s.strip("<>"), "graph": g.strip("<>") if g else None,
                             "triples": len(lines), "source": "test.nq", "line": i + 1},
                    "tokens": {"cl100k_base": len(text)}})
    return out


def make_graph_version(name: str = "kg", trips=None):
    from ciyuan.store import VersionBuilder

    b = VersionBuilder(name, made_by={"tool": "tests"})
    for r in records(trips):
        b.add(r)
    return b.commit()


def nquads(trips=None) -> str:
    return "".join(r["text"] for r in records(trips))


def make_graph_market(price: str = "2000.00", deposit: str = "1000.00", trips=None):
    """A provider's graph listing and a buyer (with a key and ``deposit`` CNY), all real."""
    from types import SimpleNamespace

    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.ledger.money import parse_amount
    from ciyuan.market import accounts, listings

    def setup(sess):
        accs = {n: accounts.create_account(sess, n, r) for n, r in [("prov", "provider"), ("alice", "buyer")]}
        _, key = accounts.create_key(sess, "alice")
        ledger.deposit(sess, "dep-1", accs["alice"].id, parse_amount(deposit, "CNY"), "CNY")
        return accs, key

    accs, key = tx.run(setup)
    version = make_graph_version(trips=trips)
    listing = listings.publish(version.ref, provider="prov", price_per_mtok=price, sample=2)
    return SimpleNamespace(accounts=accs, key=key, version=version, listing=listing,
                           buyer=accs["alice"].id, provider=accs["prov"].id)


def entitlement(env, token_budget: int | None = None, key: str = "k1", buyer: str | None = None,
                metered: bool = True) -> dict:
    """An order of the listing (metered by default) whose tokens are the call budget."""
    from ciyuan.market import orders, quotes

    sel = {"token_budget": token_budget} if token_budget else None
    q = quotes.create_quote(buyer or env.buyer, env.listing["id"], sel)
    order, _ = orders.place_order(buyer or env.buyer, q["id"], key, billing="metered" if metered else "prepaid")
    return order["entitlement"]


DOCS = ["The gearbox oil temperature alarm triggered at turbine 7.", "风机齿轮箱温度过高，需要立即停机检查。",
        "Pitch bearing lubrication is due every six months.", "ブレードの前縁に亀裂が見つかりました。",
        "블레이드 앞전에서 균열이 발견되었습니다."]


def publish_kb(env, name: str = "manuals"):
    """A text knowledge base listed by the same provider (its retrieval index is built at publish)."""
    from ciyuan.market import listings
    from ciyuan.store import VersionBuilder

    b = VersionBuilder(name, made_by={"tool": "tests"})
    for i, t in enumerate(DOCS):
        b.add({"id": f"d{i}", "text": t, "meta": {}, "tokens": {"cl100k_base": 400}})
    v = b.commit()
    return listings.publish(v.ref, provider="prov", price_per_mtok="2000.00", sample=0)


class ThreadServer:
    """An ASGI app under uvicorn on a loopback port, in a thread of the test process."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        import time

        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
