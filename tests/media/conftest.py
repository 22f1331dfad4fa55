"""Make the media generator importable as ``media_gen`` (tests use importlib import mode)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
