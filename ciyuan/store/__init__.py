"""Storage layer: datasets, immutable content-addressed versions, Parquet shards and manifests."""

from ciyuan.store.builder import VersionBuilder
from ciyuan.store.versions import Version, list_datasets, list_versions, resolve

__all__ = ["Version", "VersionBuilder", "list_datasets", "list_versions", "resolve"]
