"""Money: the double-entry ledger (the only writer of money), currencies and amounts, the hash-chained
audit log of every transfer, and the Ed25519 signatures over receipts, statements and checkpoints."""
