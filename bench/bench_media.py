"""Media probing and near-duplicate search against their references, side by side in one run.

(a) Probing images (``probe_image``, headers + the constant-cost structure check) against a loop of
    Pillow's ``Image.open(f).size`` over the same files (headers only, the target: >= 0.8x its
    rate) and against a full-decode loop (``Image.open(f).load()``); ``probe_image(check="decode")``
    is timed too. CPU seconds of this process (user + system), best of ``--repeat`` interleaved rounds.
(b) Near-duplicate search at ``--hashes`` 64-bit hashes (random, with planted families of copies
    1-5 bits apart) with ``HammingIndex`` against all-pairs numpy Hamming (``all_pairs``: chunked
    XOR + popcount over the upper triangle): identical results, and the speed ratio (target >= 20x).
    The same on real pHashes of generated pictures and their copies (``--pictures``).
(c) With ``--video-mb N``: a Matroska file of N MB (packets repeated, no re-encoding) probed in a
    child process: its peak RSS growth against the file size.

    .venv/bin/python bench/bench_media.py --images 2000 --hashes 100000 --threshold 8 --json
    .venv/bin/python bench/bench_media.py --images 0 --hashes 0 --video-mb 2048
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "media"))

from media_gen import encode, near_copies, picture, repeat_video, video_bytes  # noqa: E402
from PIL import Image  # noqa: E402

from ciyuan.curate.phash import HammingIndex, all_pairs, phash  # noqa: E402
from ciyuan.ingest.probe import Limits, probe_image  # noqa: E402


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` files: JPEG (half with an EXIF orientation), PNG, WebP, GIF, at 640x480 and 1600x1200."""
    files = []
    kinds = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("JPEG", "jpg"), ("GIF", "gif")]
    bases = [picture(s, (640, 480)) for s in range(8)] + [picture(100 + s, (1600, 1200)) for s in range(4)]
    for i in range(n):
        pil, ext = kinds[i % len(kinds)]
        im = bases[i % len(bases)]
        kw = {}
        if pil == "JPEG" and i % 2:
            exif = Image.Exif()
            exif[0x0112] = 6
            kw["exif"] = exif.tobytes()
        path = folder / f"img{i:06d}.{ext}"
        path.write_bytes(encode(im, pil, **kw))
        files.append(path)
    return files


def bench_probe(n: int, repeat: int) -> dict:
    limits = Limits()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_images(Path(tmp), n)
        total_mb = sum(f.stat().st_size for f in files) / 1e6

        def headers():
            for f in files:
                with Image.open(f) as im:
                    im.size  # noqa: B018

        def probe():
            for f in files:
                probe_image(f, limits=limits)

        def probe_decode():
            for f in files:
                probe_image(f, limits=limits, check="decode")

        def decode():
            for f in files:
                with Image.open(f) as im:
                    im.load()

        runs = {"headers": [], "probe": [], "probe_decode": [], "decode": []}
        headers(), probe()  # warm the page cache and imports
        for r in range(repeat):
            for name, fn in (("headers", headers), ("probe", probe), ("decode", decode),
                             ("probe_decode", probe_decode)):
                if r == 0 or "decode" not in name:  # the decode loops take 50x longer: once is enough
                    runs[name].append(_cpu(fn))
        per_format = {}
        for ext in sorted({f.suffix for f in files}):
            some = [f for f in files if f.suffix == ext]
            hdr = min(_cpu(lambda some=some: [Image.open(f).close() for f in some]) for _ in range(repeat))
            prb = min(_cpu(lambda some=some: [probe_image(f, limits=limits) for f in some]) for _ in range(repeat))
            per_format[ext.lstrip(".")] = round(hdr / prb, 3)
    best = {k: min(v) for k, v in runs.items()}
    return {
        "probe_vs_headers_by_format": per_format,
        "files": n, "mb": round(total_mb, 1),
        "files_per_cpu_s": {k: round(n / v, 1) for k, v in best.items()},
        "probe_vs_headers": round(best["headers"] / best["probe"], 3),
        "probe_vs_decode": round(best["decode"] / best["probe"], 2),
        "probe_decode_vs_decode": round(best["decode"] / best["probe_decode"], 2),
        "cpu_s": {k: [round(x, 3) for x in v] for k, v in runs.items()},
    }


def planted_hashes(n: int, seed: int = 0) -> np.ndarray:
    """``n`` hashes: 80 % random, 20 % in families of 4 copies 1-5 bits from a random original."""
    rng = np.random.default_rng(seed)
    n_copies = n // 5
    base = rng.integers(0, 2**64 - 1, n - n_copies, dtype=np.uint64, endpoint=True)
    copies = np.repeat(base[: n_copies // 4], 4)[:n_copies]
    for _ in range(5):
        flip = rng.random(len(copies)) < 0.8
        copies[flip] ^= np.uint64(1) << rng.integers(0, 64, int(flip.sum())).astype(np.uint64)
    h = np.concatenate([base, copies])
    return h[rng.permutation(len(h))]


def real_hashes(pictures: int) -> np.ndarray:
    out = []
    for s in range(pictures):
        im = picture(s)
        out.append(phash(im))
        out.extend(phash(encode(c, "PNG")) for _, c in near_copies(im, s))
    return np.array(out, dtype=np.uint64)


def bench_index(h: np.ndarray, k: int) -> dict:
    """Build + search of the index against all-pairs, CPU seconds, same hashes, same threshold."""
    out = {}

    def index():
        idx = HammingIndex(k)
        idx.add(h)
        out["index"] = idx.pairs()

    def brute():
        out["brute"] = all_pairs(h, k)

    t_index = _cpu(index)
    t_brute = _cpu(brute)
    t_index = min(t_index, _cpu(index))  # second run: the first paid for numpy's first touches
    got, want = out["index"], out["brute"]
    return {"hashes": len(h), "threshold": k, "pairs": len(got), "identical": bool(np.array_equal(got, want)),
            "index_cpu_s": round(t_index, 3), "all_pairs_cpu_s": round(t_brute, 3),
            "speedup": round(t_brute / t_index, 1)}


def bench_video(mb: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clip = video_bytes("mp4", "libx264", frames=50, size=(320, 240), options={"crf": "0"})
        path = Path(tmp) / "big.mkv"
        repeat_video(clip, str(path), max(1, round(mb * 1e6 / len(clip))))
        size = path.stat().st_size
        child = textwrap.dedent(f"""
            import json, resource, sys, time
            sys.path.insert(0, {str(ROOT / "tests" / "media")!r})
            from media_gen import video_bytes
            from ciyuan.ingest.probe import Limits, probe_video
            probe_video(video_bytes("matroska", "libx264", frames=5), name="warm.mkv", limits=Limits())
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            facts = probe_video({str(path)!r}, limits=Limits())
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(json.dumps({{"facts": facts, "rss_before_mb": before / 1024, "rss_after_mb": after / 1024,
                              "wall_s": wall}}))
        """)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"file_mb": round(size / 1e6, 1), "frames": r["facts"]["frames"], "duration_s": r["facts"]["duration_s"],
            "peak_rss_before_mb": round(r["rss_before_mb"], 1), "peak_rss_after_mb": round(r["rss_after_mb"], 1),
            "growth_mb": round(r["rss_after_mb"] - r["rss_before_mb"], 1), "wall_s": round(r["wall_s"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hashes", type=int, default=100_000)
    ap.add_argument("--threshold", type=int, default=8)
    ap.add_argument("--pictures", type=int, default=1000, help="pictures (x5 with copies) for the real-hash run")
    ap.add_argument("--video-mb", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    report: dict = {"load_avg": os.getloadavg()}
    if a.images:
        report["probe"] = bench_probe(a.images, a.repeat)
        print("probe", report["probe"], file=sys.stderr)
    if a.hashes:
        report["index_planted"] = bench_index(planted_hashes(a.hashes), a.threshold)
        print("index", report["index_planted"], file=sys.stderr)
    if a.pictures:
        report["index_real"] = bench_index(real_hashes(a.pictures), a.threshold)
        print("index real", report["index_real"], file=sys.stderr)
    if a.video_mb:
        report["video"] = bench_video(a.video_mb)
        print("video", report["video"], file=sys.stderr)
    report["load_avg_end"] = os.getloadavg()
    print(json.dumps(report, indent=None if a.json else 2))


if __name__ == "__main__":
    main()
