"""Delivery of what a buyer is entitled to: the plan of an entitlement, metered streams with holds
and acknowledgements, packages of signed shard URLs, usage rows and receipts."""
