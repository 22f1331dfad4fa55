"""Knowledge for agents: RDF graphs (parse, canonical N-Triples, a SPARQL store beside a version) and
knowledge bases (token-bounded chunks, BM25, dense vectors, hybrid retrieval).

It sits just above storage: ingest, curation, appraisal, the market (indexes built at publish) and
delivery (metered query calls) all read it; it reads only versions, tokens and the ground below.
"""
