"""ciyuan (词元): industry datasets made AI-ready, valued, priced and traded in tokens."""

__version__ = "0.1.0"
