"""What signed delivery URLs share (packages, media blobs): their lifetimes and their two refusals.

A URL carries ``exp`` (unix seconds) and ``sig``, an HMAC-SHA256 under the exchange's secret of
what it names; whoever holds it may download until ``exp``.
"""

from __future__ import annotations

from ciyuan.errors import CiyuanError

DEFAULT_TTL_S = 3600
MAX_TTL_S = 7 * 24 * 3600


class UrlExpired(CiyuanError):
    code = "url_expired"
    status = 410


class BadSignature(CiyuanError):
    code = "bad_signature"
    status = 403
