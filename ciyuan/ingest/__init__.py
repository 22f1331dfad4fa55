"""Intake: format readers that turn a provider's files into records (or quarantined items with a
reason), declared dataset cards, and the ingest run that builds the first version."""
