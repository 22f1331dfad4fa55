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

tuned = memory.tune()
blocks = [bytearray(300_000) for _ in range(1000)]  # 300 MB of blocks under the mmap threshold: the heap
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
    freed_kb = 500 * 300_000 // 1024
    assert res["before"] - res["after"] > freed_kb * 0.8, res


def test_release_and_tune_are_safe_to_call_repeatedly():
    from ciyuan.store import memory

    first = memory.tune()
    assert memory.tune() == first
    memory.release()
    memory.release()
