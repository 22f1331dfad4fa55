"""Quotes over robot episodes: a LeRobot v2.1 folder made by the test generator, imported with
``ciyuan ingest``, published under ``episode-openvla``, and quoted through the SDK with filters on
the measured episode facts (length, robot type, task, success, camera). Each expected total is the
schedule's own count of exactly the episodes the filter should keep."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))

from episode_gen import CAM, lerobot_v21  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ciyuan.cli.main import app  # noqa: E402
from ciyuan.sdk import ApiError, Client  # noqa: E402
from ciyuan.tokens import get_schedule  # noqa: E402

SCHED = "episode-openvla"


def test_quotes_select_episodes_by_measured_facts(live, tmp_path: Path) -> None:
    from ciyuan.db import tx
    from ciyuan.market import accounts, listings
    from ciyuan.store import resolve

    # lengths 30, 24, 20, 12: tasks alternate pick/push; success declared for three of the four
    root = lerobot_v21(tmp_path / "so100", lengths=(30, 24, 20, 12), success=(True, False, True, None))
    res = CliRunner().invoke(app, ["ingest", str(root), "--dataset", "arm", "--json"])
    assert res.exit_code == 0, res.output
    v = resolve("arm")
    recs = sorted(v.iter_records(resolve_media=True), key=lambda r: r["meta"]["episode"]["episode_index"])
    assert [r["meta"].get("success") for r in recs] == [True, False, True, None]
    counts = dict(enumerate(get_schedule(SCHED).count_records(recs)))
    assert len(set(counts.values())) == 4  # every episode counts differently: a wrong set shows

    def setup(s):
        for n, r in [("prov", "provider"), ("alice", "buyer")]:
            accounts.create_account(s, n, r)
        return accounts.create_key(s, "alice")[1]

    key = tx.run(setup)
    listing = listings.publish(v.ref, provider="prov", price_per_mtok="100.00", schedule=SCHED, sample=0)
    c = Client(live.url, key)
    card = c.listing(listing["id"])["card"]
    assert card["fields"]["meta.episode.length"] == "integer"
    assert card["fields"]["meta.episode.robot_type"] == "string"
    assert card["fields"]["meta.success"] == "boolean"
    assert card["fields"]["meta.episode.tasks"] == "strings"
    assert card["fields"]["meta.episode.cameras"] == "strings"

    def quote(f: dict) -> tuple[int, int]:
        try:
            q = c.quote(listing["id"], {"filter": f})
        except ApiError as e:
            if e.code == "empty_selection":  # nothing matched: the exchange refuses an empty quote
                return 0, 0
            raise
        return q["records"], q["tokens"]

    def want(*eps: int) -> tuple[int, int]:
        return len(eps), sum(counts[i] for i in eps)

    assert quote({"field": "meta.episode.length", "op": "ge", "value": 20}) == want(0, 1, 2)
    assert quote({"field": "meta.episode.robot_type", "op": "eq", "value": "synthetic_arm6"}) == want(0, 1, 2, 3)
    assert quote({"field": "meta.episode.robot_type", "op": "eq", "value": "aloha"}) == (0, 0)
    assert quote({"field": "meta.episode.tasks", "op": "contains", "value": "red cube"}) == want(0, 2)
    assert quote({"field": "meta.task", "op": "eq", "value": "push the block to the left"}) == want(1, 3)
    assert quote({"field": "meta.success", "op": "eq", "value": True}) == want(0, 2)
    assert quote({"not": {"field": "meta.success", "op": "exists"}}) == want(3)
    assert quote({"field": "meta.episode.cameras", "op": "in", "value": [CAM, "observation.images.wrist"]}) \
        == want(0, 1, 2, 3)
    assert quote({"field": "meta.episode.cameras", "op": "eq", "value": "observation.images.wrist"}) == (0, 0)
    assert quote({"field": "meta.episode.cameras", "op": "not_in", "value": ["observation.images.wrist"]}) \
        == want(0, 1, 2, 3)
    both = {"and": [{"field": "meta.episode.length", "op": "ge", "value": 20},
                    {"field": "meta.success", "op": "eq", "value": True},
                    {"field": "meta.episode.tasks", "op": "contains", "value": "pick"}]}
    assert quote(both) == want(0, 2)
    try:
        quote({"field": "meta.episode.tasks", "op": "ge", "value": "a"})
        raise AssertionError("an ordered comparison on a list of names must be refused")
    except ApiError as e:
        assert "list of names" in str(e)
