"""Curation: steps over record dicts, recipes that order them, executors that run them over versions."""
