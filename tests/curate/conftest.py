"""Make the planted-corpus generator importable as ``corpus`` (tests use importlib import mode)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
