"""Make the episode generator importable as ``episode_gen`` (tests use importlib import mode)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
