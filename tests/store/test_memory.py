"""Freed memory goes back to the system between batches (ciyuan.store.memory), run in a fresh child
so the test's own heap does not blur the numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHILD = r"""
import json, sys
from ciyuan.store import memory

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

tuned = memory.available()
blocks = [bytearray(100_000) for _ in range(2000)]  # 200 MB of blocks under glibc's 128 KiB mmap threshold: the heap
for b in blocks:
    b[::4096] = b"x" * len(b[::4096])  # touch every page
del blocks[::2]  # every other block freed: holes inside the heap, none at its top
before = rss_kb()
memory.release()
after = rss_kb()
memory.release()  # a second call with nothing to give back is harmless
print(json.dumps({"tuned": tuned, "before": before, "after": after}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_release_returns_the_holes_a_batch_left_in_the_heap():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    if not res["tuned"]:
        pytest.skip("not glibc malloc (musl?)")
    freed_kb = 1000 * 100_000 // 1024
    assert res["before"] - res["after"] > freed_kb * 0.8, res


def test_release_is_safe_to_call_repeatedly_and_with_pyarrow_loaded():
    import pyarrow  # noqa: F401 - release also asks pyarrow's pool to drop its cache

    from ciyuan.store import memory

    memory.release()
    memory.release()
