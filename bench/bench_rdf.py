"""RDF ingest through ciyuan against pyoxigraph's own bulk load of the same file, in one run.

Generates a graph (plants, pumps, tanks and sensors with typed literals, English and Chinese
labels; about six triples a subject) as N-Triples and as Turtle, then for each file times, in
alternating order, ``pyoxigraph.Store().bulk_load`` (parsing into an in-memory store: the
reference) and ``ciyuan.ingest.run.ingest`` into a fresh home (parse, canonical lines, grouping
by subject, token counting under the ``ntriples`` schedule, Parquet shards, manifest). Reported:
the median of ``--repeats`` runs of each, and ``ratio = bulk_load time / ciyuan time`` (target:
>= 0.7, i.e. ciyuan takes at most 1.43x as long), with the load average before and after.

    .venv/bin/python bench/bench_rdf.py --triples 300000 --repeats 3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ZH = "一号二号三号泵站水箱传感器温度压力流量阀门管道电机"


def generate(folder: Path, triples: int, seed: int = 7) -> tuple[Path, Path]:
    """An N-Triples file of about ``triples`` statements and the same graph as Turtle."""
    rng = random.Random(seed)
    ex, rdfs, xsd = "http://ex.org/plant/", "http://www.w3.org/2000/01/rdf-schema#", "http://www.w3.org/2001/XMLSchema#"
    rdf_type = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
    nt, ttl = [], [f"@prefix ex: <{ex}> .\n@prefix rdfs: <{rdfs}> .\n@prefix xsd: <{xsd}> .\n"]
    n = 0
    i = 0
    while n < triples:
        s = f"<{ex}dev{i}>"
        kind = ("Pump", "Tank", "Sensor", "Valve")[i % 4]
        label = "".join(rng.choice(ZH) for _ in range(4)) + f" {i}"
        date = f"20{rng.randrange(10, 25)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 9)}"
        rows = [(rdf_type, f"<{ex}{kind}>"), (f"{rdfs}label", f'"{label}"@zh'),
                (f"{rdfs}label", f'"device {i} ({kind.lower()})"@en'),
                (f"{ex}rated", f'"{rng.randrange(1, 500)}"^^<{xsd}integer>'),
                (f"{ex}installed", f'"{date}"^^<{xsd}date>'),
                (f"{ex}feeds", f"<{ex}dev{rng.randrange(max(1, i + 1))}>")]
        for p, o in rows:
            nt.append(f"{s} <{p}> {o} .\n")
        ttl.append(f"ex:dev{i} a ex:{kind} ; rdfs:label \"{label}\"@zh , \"device {i} ({kind.lower()})\"@en ;\n"
                   f"    ex:rated {rows[3][1].split('^^')[0]}^^xsd:integer ; ex:installed \"{date}\"^^xsd:date ;\n"
                   f"    ex:feeds ex:dev{rows[5][1][len(ex) + 4:-1]} .\n")
        n += len(rows)
        i += 1
    a, b = folder / "plant.nt", folder / "plant.ttl"
    a.write_text("".join(nt), encoding="utf-8")
    b.write_text("".join(ttl), encoding="utf-8")
    return a, b


def time_bulk_load(path: Path) -> tuple[float, int]:
    import pyoxigraph as ox

    fmt = ox.RdfFormat.N_TRIPLES if path.suffix == ".nt" else ox.RdfFormat.TURTLE
    t = time.perf_counter()
    store = ox.Store()
    store.bulk_load(path=str(path), format=fmt)
    took = time.perf_counter() - t
    return took, len(store)


def time_ciyuan(path: Path, workers: int, home: Path) -> tuple[float, dict]:
    os.environ["CIYUAN_HOME"] = str(home)
    from ciyuan import db
    from ciyuan.config import settings

    db.dispose_all()
    settings.cache_clear()
    from ciyuan.ingest.run import ingest

    t = time.perf_counter()
    out = ingest([str(path)], "bench", workers=workers)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triples", type=int, default=300_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="bench-rdf-") as tmp:
        root = Path(tmp)
        files = generate(root, args.triples)
        result = {"triples_asked": args.triples, "workers": args.workers, "repeats": args.repeats,
                  "load_before": load_before, "files": {}}
        time_ciyuan(files[0], args.workers, root / "warm")  # imports, tokenizer load: not timed
        for path in files:
            ours, ref, stored, info = [], [], 0, {}
            for k in range(args.repeats):
                for which in (("ref", "ours") if k % 2 == 0 else ("ours", "ref")):
                    if which == "ref":
                        took, stored = time_bulk_load(path)
                        ref.append(took)
                    else:
                        took, info = time_ciyuan(path, args.workers, root / f"home-{path.suffix[1:]}-{k}")
                        ours.append(took)
            med_ours, med_ref = statistics.median(ours), statistics.median(ref)
            result["files"][path.name] = {
                "bytes": path.stat().st_size, "triples": stored, "records": info.get("records"),
                "tokens": info.get("tokens"), "bulk_load_s": [round(x, 3) for x in ref],
                "ciyuan_s": [round(x, 3) for x in ours], "bulk_load_median_s": round(med_ref, 3),
                "ciyuan_median_s": round(med_ours, 3), "ratio": round(med_ref / med_ours, 3),
                "ciyuan_triples_per_s": round(stored / med_ours),
            }
        result["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
        return
    print(f"load average before {' '.join(load_before)}, after {' '.join(result['load_after'])}")
    for name, r in result["files"].items():
        print(f"{name}: {r['triples']:,} triples, {r['bytes'] / 1e6:.1f} MB -> {r['records']:,} graph records; "
              f"bulk_load {r['bulk_load_median_s']} s, ciyuan {r['ciyuan_median_s']} s: ratio {r['ratio']}x "
              f"(target >= 0.7x)")


if __name__ == "__main__":
    sys.exit(main())
