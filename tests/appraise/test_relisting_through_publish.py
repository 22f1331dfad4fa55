"""Uniqueness against the catalog, through the real publish path: re-listing another's data scores low."""

from __future__ import annotations

from pathlib import Path

from ciyuan.appraise import appraise
from ciyuan.data import MAINTENANCE_LOGS
from ciyuan.db import tx
from ciyuan.ingest.run import ingest
from ciyuan.market import accounts, listings


def test_version_listed_by_two_providers(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "logs.jsonl"
    src.write_text("\n".join(MAINTENANCE_LOGS.read_text(encoding="utf-8").splitlines()[:300]) + "\n", "utf-8")
    a = tx.run(lambda s: accounts.create_account(s, "first-provider", "provider")).id
    b = tx.run(lambda s: accounts.create_account(s, "second-provider", "provider")).id
    v = ingest([str(src)], "logs")
    ref = f"logs@{v['version']}"

    first = appraise(ref, provider=a)
    assert first["uniqueness"]["score"] > 0.9  # nothing is listed yet
    listings.publish(ref, provider=a, price_per_mtok="20", currency="CNY")

    copy = ingest([str(src)], "copied-logs")  # the same records under another name
    second = appraise(f"copied-logs@{copy['version']}", provider=b)
    assert second["uniqueness"]["score"] < 0.1
    listings.publish(f"copied-logs@{copy['version']}", provider=b, price_per_mtok="15", currency="CNY")
    again = appraise(ref, provider=a)  # the first provider listed first: the later copy does not count
    assert again["uniqueness"]["score"] > 0.9
    assert again["uniqueness"]["evidence"]["records_first_listed_by_owner"] > 250
    copied_again = appraise(f"copied-logs@{copy['version']}", provider=b)  # the copy stays a copy
    assert copied_again["uniqueness"]["score"] < 0.1
    assert copied_again["price"]["price_per_mtok_minor"] < again["price"]["price_per_mtok_minor"] / 5
