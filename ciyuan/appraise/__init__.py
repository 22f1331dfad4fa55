"""Value layer: quality indicators, uniqueness against the catalog, utility, record values, price.

``appraise(ref)`` runs everything on a stored version and keeps the result with it; the pure
algorithms live in their own modules (``knn_shapley``, ``ngram_lm``, ``utility_labelled``,
``quality``, ``uniqueness``, ``price``, ``card``, ``report``) and need no store.
"""

from __future__ import annotations


def __getattr__(name: str):
    # lazy: the pure modules must import without pulling in the store and database
    if name in ("appraise", "card", "load", "register_listing", "catalog", "history"):
        from ciyuan.appraise import engine

        return getattr(engine, name)
    raise AttributeError(name)


__all__ = ["appraise", "card", "catalog", "history", "load", "register_listing"]
