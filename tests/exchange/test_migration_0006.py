"""Migration 0006 on a database that already has the duplicates issue 11 describes.

Before 0006 the same version could be listed again and again; upgrading must keep one active
listing per provider and version (the newest), give every listing its price version 1, and from
then on refuse a second active listing at the database level too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from ciyuan.config import settings
from ciyuan.db import MIGRATIONS


def _upgrade(eng: sa.Engine, rev: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, rev)


def test_upgrade_keeps_the_newest_duplicate_active_and_backfills_prices(db_home):
    eng = sa.create_engine(settings().database_url)
    try:
        _upgrade(eng, "0004")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        sched = '{"currency": "CNY", "mode": "graduated", "tiers": [{"from_tokens": 0, "price_per_mtok": "1"}]}'
        with eng.begin() as c:
            acc = "INSERT INTO ex_accounts (id, name, role, created_at) VALUES ('acc_p', 'p', 'provider', :t)"
            c.execute(sa.text(acc), {"t": t0})
            for i in range(3):
                c.execute(
                    sa.text(
                        "INSERT INTO ex_listings (id, provider_id, dataset, version_id, schedule, currency, "
                        "price_schedule, base_rate_micro, license, records, tokens, card, sample, index_location, "
                        "status, created_at) VALUES (:id, 'acc_p', 'd', 'v1', 'cl100k_base', 'CNY', :ps, :r, '', 1, "
                        "1, '{}', '[]', '', 'active', :t)"
                    ),
                    {"id": f"lst_{i}", "ps": sched, "r": (i + 1) * 10**6, "t": t0 + timedelta(days=i)},
                )
        _upgrade(eng, "0006")
        with eng.begin() as c:
            rows = c.execute(sa.text("SELECT id, status, price_version FROM ex_listings ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [("lst_0", "delisted", 1), ("lst_1", "delisted", 1),
                                                ("lst_2", "active", 1)]  # fmt: skip
            prices = c.execute(sa.text("SELECT listing_id, version FROM ex_listing_prices ORDER BY listing_id")).all()
            assert [tuple(p) for p in prices] == [("lst_0", 1), ("lst_1", 1), ("lst_2", 1)]
        with pytest.raises(sa.exc.IntegrityError), eng.begin() as c:
            c.execute(sa.text("UPDATE ex_listings SET status = 'active' WHERE id = 'lst_0'"))
    finally:
        eng.dispose()
