"""Download throughput: officescore's concurrent downloader vs one request at a time.

A loopback image host adds `--latency` seconds (default 0.1) to every request, like a distant
server. Both sides do the same work per image (HTTP GET, sha256, Pillow decode check, phash);
the baseline does it one image after another in the same process.

    .venv/bin/python bench/scrape.py            # 64 images
    .venv/bin/python bench/scrape.py --n 128 --latency 0.2
    .venv/bin/python bench/scrape.py --n 32 --size 4000x3000   # phone-sized JPEGs (about 2 MB)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from benchkit import positive_int  # noqa: E402 - bench/, first on sys.path when run as a script
from fakeservers import LatencyHost  # noqa: E402

from officescore.scrape.download import DownloadConfig, Downloader, verify_image  # noqa: E402


def baseline(urls: list[str], folder: Path, config: DownloadConfig) -> int:
    """One at a time: GET, hash, verify; a kept session so it is not penalised by reconnects."""
    ok = 0
    session = requests.Session()
    for i, url in enumerate(urls):
        response = session.get(url, timeout=(config.connect_timeout, config.read_timeout))
        response.raise_for_status()
        path = folder / f"base-{i}.part"
        path.write_bytes(response.content)
        hashlib.sha256(response.content).hexdigest()
        verify_image(path, config)
        path.unlink()
        ok += 1
    return ok


def concurrent(urls: list[str], folder: Path, config: DownloadConfig) -> int:
    ok = 0
    for _, fetched in Downloader(config, folder).map(enumerate(urls)):
        ok += fetched.status == "fetched"
        fetched.discard()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=positive_int, default=64, help="images per run")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every request")
    parser.add_argument("--size", default="320x240", help="photo size WxH the host serves")
    args = parser.parse_args()

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size: WxH, e.g. 4000x3000, got {args.size}")
    host = LatencyHost(latency=args.latency, size=(width, height)).start()
    urls = [f"{host.url}/img/{i}" for i in range(args.n)]
    default = DownloadConfig(allow_private_hosts=True, min_width=64, min_height=64)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            cases = [
                ("one at a time (baseline)", baseline, default),
                ("officescore, defaults (16 workers, 8 per host)", concurrent, default),
                (
                    "officescore, 32 workers, 32 per host",
                    concurrent,
                    replace(default, workers=32, per_host=32),
                ),
            ]
            for label, run, config in cases:
                start = time.perf_counter()
                ok = run(urls, folder, config)
                seconds = time.perf_counter() - start
                assert ok == args.n, f"{label}: only {ok}/{args.n} images verified"
                rows.append((label, seconds, args.n / seconds))
    finally:
        host.stop()

    base_rate = rows[0][2]
    kib = sum(len(j) for j in host.jpegs) / len(host.jpegs) / 1024
    about = f"{args.n} {args.size} images ({kib:.0f} KiB), {args.latency * 1000:.0f} ms added latency"
    print(f"{about}, loopback host")
    print(f"{'downloader':50s} {'seconds':>8s} {'images/s':>9s} {'ratio':>6s}")
    for label, seconds, rate in rows:
        print(f"{label:50s} {seconds:8.2f} {rate:9.1f} {rate / base_rate:5.1f}x")


if __name__ == "__main__":
    main()
