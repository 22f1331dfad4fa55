"""A home at migration 0008 upgrades to the calls table (0009_query) and can then make metered calls."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from graphdata import EX, entitlement, make_graph_market

from ciyuan.config import settings
from ciyuan.db import MIGRATIONS, dispose_all
from ciyuan.delivery import calls


def _upgrade(eng: sa.Engine, rev: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, rev)


def test_home_at_0008_upgrades_and_calls(home) -> None:
    url = settings().database_url
    eng = sa.create_engine(url)
    _upgrade(eng, "0008")
    assert "dl_calls" not in sa.inspect(eng).get_table_names()
    eng.dispose()
    dispose_all()
    env = make_graph_market()  # the home's engine migrates it to head on first use
    eng = sa.create_engine(url)
    assert "dl_calls" in sa.inspect(eng).get_table_names()
    with eng.connect() as c:
        assert c.execute(sa.text("select version_num from alembic_version")).scalar() == "0009_query"
    eng.dispose()
    entitlement(env)
    out = calls.sparql_call(env.buyer, env.listing["id"], f"ASK {{ ?s <{EX}age> 34 }}")
    assert out["result"]["boolean"] is True and out["usage"]["tokens"] > 0
