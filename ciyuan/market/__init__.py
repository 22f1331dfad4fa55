"""The market: accounts and API keys, listings and their lifecycle, price schedules, quotes, orders,
entitlements, and the settlement of a period. Money moves only through :mod:`ciyuan.ledger`."""
