"""Peak memory of ``ciyuan ingest`` on generated media, at two input sizes (target: flat as input grows).

For each size it generates (1) a folder of images: 2048x2048 noise PNGs of ~12 MB each (made
distinct by a ``tEXt`` chunk, so each is its own blob) with a caption sidecar, and small JPEGs that
stay inline; (2) a WebDataset tar holding one long H.264 video of about that size. Each is ingested
by the real CLI in a fresh child process, which reports its own peak RSS (``ru_maxrss``).

    PYTHONPATH=. .venv/bin/python bench/bench_media_ingest.py --mb 100 400 --json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "media"))

CHILD = r"""
import json, resource, sys
from ciyuan.ingest.run import ingest
out = ingest(sys.argv[2:], sys.argv[1])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"records": out["records"], "quarantined": out["quarantined"], "blobs": out.get("blobs"),
                  "modality": out.get("modality"), "peak_rss_mb": peak}))
"""


def _with_text_chunk(png: bytes, note: str) -> bytes:
    body = b"Comment\x00" + note.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    at = png.rindex(b"IEND") - 4
    return png[:at] + chunk + png[at:]


def make_images(folder: Path, mb: int) -> int:
    import numpy as np
    from media_gen import encode, picture
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    big = encode(Image.fromarray(rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8), "RGB"), "PNG", compress_level=1)
    small = [encode(picture(i, (320, 240)), "JPEG", quality=85) for i in range(8)]
    total = n = 0
    while total < mb << 20:
        data = _with_text_chunk(big, f"copy {n}")
        (folder / f"big{n:05d}.png").write_bytes(data)
        (folder / f"big{n:05d}.txt").write_text(f"noise picture number {n}", encoding="utf-8")
        for j, s in enumerate(small):
            (folder / f"small{n:05d}_{j}.jpg").write_bytes(s)
            total += len(s)
        total += len(data)
        n += 1
    return total


def make_video_tar(path: Path, mb: int) -> int:
    from media_gen import repeat_video, video_bytes

    clip = video_bytes("mp4", "libx264", frames=50, size=(640, 360), fps=25)
    times = max(1, (mb << 20) // len(clip))
    mkv = path.with_suffix(".mkv")
    repeat_video(clip, str(mkv), times)
    with tarfile.open(path, "w") as tf:
        tf.add(mkv, arcname="long.mkv")
        caption = b"a long noise video"
        info = tarfile.TarInfo("long.txt")
        info.size = len(caption)
        tf.addfile(info, io.BytesIO(caption))
    size = mkv.stat().st_size
    mkv.unlink()
    return size


def run(home: Path, dataset: str, src: Path) -> dict:
    env = {**os.environ, "CIYUAN_HOME": str(home)}
    env.pop("CIYUAN_DATABASE_URL", None)
    env.pop("CIYUAN_STORAGE_URL", None)
    res = subprocess.run([sys.executable, "-c", CHILD, dataset, str(src)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, nargs=2, default=[100, 400], help="the two input sizes, MB")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ciyuan-media-bench-") as tmp:
        t = Path(tmp)
        for mb in args.mb:
            size = make_images(t / f"img{mb}" / "pics", mb)
            out = run(t / f"home-img{mb}", "pics", t / f"img{mb}" / "pics")
            rows.append({"kind": "images", "input_mb": round(size / 2**20, 1), **out})
            shutil.rmtree(t / f"img{mb}")  # each size's input and home go before the next: 5 GB is 10 GB on disk
            shutil.rmtree(t / f"home-img{mb}")
            vsize = make_video_tar(t / f"vid{mb}.tar", mb)
            out = run(t / f"home-vid{mb}", "clips", t / f"vid{mb}.tar")
            rows.append({"kind": "video-tar", "input_mb": round(vsize / 2**20, 1), **out})
            (t / f"vid{mb}.tar").unlink()
            shutil.rmtree(t / f"home-vid{mb}")
    ratios = {kind: round(rows[2 + k]["peak_rss_mb"] / rows[k]["peak_rss_mb"], 3)
              for k, kind in enumerate(["images", "video-tar"])}
    result = {"runs": rows, "peak_rss_ratio_large_over_small": ratios}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for r in rows:
            print(f"{r['kind']:10s} {r['input_mb']:8.1f} MB in  {r['records']:6d} records  {r['blobs']} blobs  "
                  f"peak RSS {r['peak_rss_mb']:7.1f} MB")
        print("peak RSS ratio, large input over small:", ratios)


if __name__ == "__main__":
    main()
