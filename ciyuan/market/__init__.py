"""The market, along the flow: accounts and API keys (``accounts``), listings and their lifecycle
(``listings``), the catalog (``catalog``), price schedules (``pricing``), selections (``selection``),
quotes (``quotes``), orders and entitlements (``orders``), and the settlement of a period
(``settlement``). Money moves only through :mod:`ciyuan.ledger`."""
