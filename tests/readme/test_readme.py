"""The README is a test: its provider, operator and buyer blocks run as written, in order.

The project is installed the way `make run` installs it (`make install` into its own virtual
environment, no test extras), so a module that only the test extras import cannot hide a crash a
user would hit. The commands run in a fresh folder and home; `ciyuan serve &` is the README's own
server. The buyer's key is the one `ciyuan key create` printed, as a user would copy it. The
"Training with PyTorch" block needs torch, which `make run` does not install: it runs with this
test's Python (the test environment) against the same server.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RUN_VENV = ROOT / ".venv-readme"  # kept between local runs; a fresh clone (CI) builds it once
# python blocks that need torch, which `make run` does not install: run by this test's own Python
# (which has the test extras, torch included) with this checkout first on the path
TORCH_SECTIONS = {"Training with PyTorch"}


def blocks() -> list[tuple[str, str, str]]:
    """(section heading, language, code) of every fenced block after the two-command intro."""
    out, section = [], ""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for m in re.finditer(r"^## ([^\n]+)$|^```(\w+)\n(.*?)^```$", text, re.M | re.S):
        if m.group(1):
            section = m.group(1).strip()
        elif section:
            out.append((section, m.group(2), m.group(3)))
    return out


def _run_env() -> Path:
    """`make install` into a separate venv: exactly the `make run` environment."""
    r = subprocess.run(["make", "-C", str(ROOT), "install", f"VENV={RUN_VENV}"], capture_output=True, text=True,
                       timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return RUN_VENV / "bin"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_readme_sessions_run_as_written(tmp_path: Path) -> None:
    if _port_open(8000):
        pytest.skip("the README's server needs port 8000, which another process holds")  # never on CI's machine
    found = blocks()
    sections = [s for s, _, _ in found]
    assert sections == ["A provider's session", "The operator opens a buyer's account", "A buyer's session",
                        "Training with PyTorch", "The operator's checks"], sections
    bin_ = _run_env()
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIYUAN_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(PATH=f"{bin_}:{env.get('PATH', '')}", CIYUAN_HOME=str(tmp_path / "home"), COLUMNS="200")
    served: list[subprocess.Popen] = []
    try:
        for section, lang, code in found:
            if lang == "bash":
                background = code.rstrip().split("\n")[-1].split("#")[0].rstrip().endswith("&")
                log = tmp_path / f"block{len(served)}-{abs(hash(section))}.log"
                with log.open("w") as fh:  # a file, not a pipe: a long-lived server must never block on output
                    # one strict shell per block; a block ending in `cmd &` keeps its shell waiting on the job
                    p = subprocess.Popen(["bash", "-euo", "pipefail", "-c", code + ("\nwait\n" if background else "")],
                                         cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True)
                if background:
                    served.append(p)
                    deadline = time.monotonic() + 900
                    while not _port_open(8000):
                        assert p.poll() is None, f"{section}: the block failed:\n{log.read_text()[-6000:]}"
                        assert time.monotonic() < deadline, f"{section}: the server did not start"
                        time.sleep(0.5)
                    continue
                p.wait(timeout=900)
                out = log.read_text()
                assert p.returncode == 0, f"{section} failed (exit {p.returncode}):\n{out[-6000:]}"
                if "key create acme" in code:
                    keys = re.findall(r"\bcyk_[A-Za-z0-9_-]{20,}", out)
                    assert keys, out
                    env["CIYUAN_KEY"] = keys[-1]
            elif lang == "python":
                python, run_env = str(bin_ / "python"), env
                if section in TORCH_SECTIONS:  # torch is not part of `make run`: the test environment has it
                    python, run_env = sys.executable, {**env, "PYTHONPATH": str(ROOT)}
                r = subprocess.run([python, "-c", code], cwd=work, env=run_env, capture_output=True,
                                   text=True, timeout=600)
                assert r.returncode == 0, f"{section} failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
        assert (work / "receipt.json").exists()
        assert (work / "curation.html").exists() and (work / "croissant.json").exists()
    finally:
        for p in served:
            try:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(timeout=30)
            except ProcessLookupError:  # the block had already ended (its failure is reported above)
                pass
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
