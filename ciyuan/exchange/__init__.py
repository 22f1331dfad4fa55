"""The market layer: accounts and keys, listings, price schedules, quotes, orders, entitlements, ledger.

Public Python API (what delivery and the faces use):

* :mod:`ciyuan.exchange.ledger` - ``deposit``, ``charge``, ``hold``, ``capture``, ``release``,
  ``create_transfer``, ``post_pending``, ``void_pending``, ``expire_due``, ``balance(s)``, ``check``;
  each takes a session so it composes inside one unit of work run by :func:`ciyuan.exchange.tx.run`.
* :mod:`ciyuan.exchange.market` - ``publish``, ``search``, ``create_quote``, ``place_order``,
  ``get_entitlement``, ``entitlement_selection``, ``record_draw``.
* :mod:`ciyuan.exchange.accounts` - ``create_account``, ``create_key``, ``revoke_key``, ``authenticate``.
* :mod:`ciyuan.exchange.pricing` - ``build_schedule`` (arbitrage-free price schedules).
* :mod:`ciyuan.exchange.selection` - the JSON filter language and the per-listing selection index.
"""
