"""A real server for browser tests: a fresh home in the environment, and ``uvicorn`` serving it.

One copy for every browser test (tests/web): the environment is put back and the process stopped
however the test ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
_ENV = ("CIYUAN_HOME", "CIYUAN_DATABASE_URL", "CIYUAN_STORAGE_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reset() -> None:
    """Forget cached settings and engines after the environment changed."""
    from ciyuan import db
    from ciyuan.config import settings

    db.dispose_all()
    settings.cache_clear()


@contextmanager
def fresh_home(home: Path) -> Iterator[Path]:
    """``CIYUAN_HOME=home`` (SQLite, local storage) for the block, the environment restored after."""
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ["CIYUAN_HOME"] = str(home)
    os.environ.pop("CIYUAN_DATABASE_URL", None)
    os.environ.pop("CIYUAN_STORAGE_URL", None)
    reset()
    try:
        yield home
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset()


@contextmanager
def serve(home: Path) -> Iterator[str]:
    """The exchange of ``home`` served on a free loopback port; yields its base URL once it answers."""
    port = free_port()
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "ciyuan.api.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "CIYUAN_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):  # wait until it answers (or died)
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not answer /v1/health")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
