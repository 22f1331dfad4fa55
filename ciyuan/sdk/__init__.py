"""The buyer's Python client: catalog, quotes, orders, usage, balance, and token streams for training.

    from ciyuan.sdk import Client, TokenStream
    client = Client("http://127.0.0.1:8000", key)
    for record in client.stream(entitlement_id):
        ...
    ds = TokenStream(client, entitlement_id)       # a torch IterableDataset when torch is installed
"""

from ciyuan.sdk.blobs import read_package
from ciyuan.sdk.client import ApiError, Batch, Client
from ciyuan.sdk.stream import TokenStream

__all__ = ["ApiError", "Batch", "Client", "TokenStream", "read_package"]
