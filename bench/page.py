"""Seconds from upload to the score on the web page (`officescore serve`), measured in Chromium.

    python bench/page.py --out /tmp/bench_page            # v2 at 800 px, 3 photos per page

Model: maskrcnn_resnet50_fpn_v2 at 800 px with bench/score.py's seeded weights (desk logit biased
so that 5-20 detections pass 0.5), saved as a checkpoint. Photos: synthetic 800x800 scenes saved as
JPEG, each uploaded once on a fresh page (the page caches results per upload). Timed: from handing
the file to the upload widget until the score ("NN/100") is shown, so upload, decoding, the model
(masks for everything the slider can show, >= 0.05), drawing and the browser's rendering.

Servers, one after the other on the same machine:
- before: the page with the model as eager torchvision runs it (officescore.infer.accel's rewrites and
  threshold push switched off in the server process), as every photo was scored before the fast path;
- fp32 and auto: `officescore serve --precision fp32|auto` (auto is serve's default);
- int8: `officescore serve --precision int8 --calibration DIR`, 16 other synthetic scenes.
The first upload of each server is reported apart (first call: NNPACK set-up, allocator warm-up,
and for int8 the calibration).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # browsers.py
from benchkit import positive_int  # noqa: E402 - bench/, first on sys.path when run as a script

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def write_inputs(out: Path, photos: int) -> tuple[Path, list[Path]]:
    import torch
    from score import calibrate, seeded_model  # bench/score.py
    from score import photos as bench_photos

    from officescore import DEFAULT_CLASSES
    from officescore.model import save_checkpoint
    from officescore.sample import render_scene

    out.mkdir(parents=True, exist_ok=True)
    model = seeded_model("maskrcnn_resnet50_fpn_v2", 800)
    bias = calibrate(model, bench_photos(1, 800)[0], 0.5)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] += bias
    checkpoint = out / "v2_seeded.pt"
    save_checkpoint(
        checkpoint,
        model=model.state_dict(),
        arch="maskrcnn_resnet50_fpn_v2",
        classes=list(DEFAULT_CLASSES),
        model_kwargs={"min_size": 800, "max_size": 1067},
        epoch=0,
    )
    for i in range(16):  # int8's calibration photos: other scenes than those uploaded
        (out / "calibration").mkdir(exist_ok=True)
        render_scene(200 + i, size=800).image.save(out / "calibration" / f"scene_{i}.jpg", quality=92)
    paths = []
    for i in range(photos + 1):  # +1: the warm-up upload
        path = out / f"scene_{i}.jpg"
        render_scene(100 + i, size=800).image.save(path, quality=92)
        paths.append(path)
    return checkpoint, paths


def serve_eager(args: list[str]) -> None:
    """Run the page in this process with officescore.infer.accel switched off (the "before" server)."""
    import officescore.infer.accel
    import officescore.infer.accel.run
    from officescore.app import PageSettings, streamlit_command

    officescore.infer.accel.prepare_model = lambda model, *a, **k: model.eval()  # as it comes
    officescore.infer.accel.run._kept_only = lambda model, conf: contextlib.nullcontext()  # masks for all
    model, port = args
    argv, env = streamlit_command(PageSettings(model=model, device="cpu", precision="fp32"), port=int(port))
    os.environ.update(env)
    sys.argv = ["streamlit", *argv[3:]]
    from streamlit.web.cli import main

    main()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(kind: str, checkpoint: Path, log: Path):  # noqa: ANN201
    port = _free_port()
    if kind == "before":
        command = [sys.executable, __file__, "--serve-eager", str(checkpoint), str(port)]
    else:
        command = [
            sys.executable,
            "-m",
            "officescore",
            "serve",
            "--model",
            str(checkpoint),
            "--device",
            "cpu",
        ]
        command += ["--port", str(port), "--precision", kind]
        if kind == "int8":
            command += ["--calibration", str(checkpoint.parent / "calibration")]
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{kind} server exited: {log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"{kind} server did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def upload_to_score(browser: object, url: str, photo: Path) -> tuple[float, str]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(url)
        upload = page.locator('input[type="file"]')
        upload.wait_for(state="attached", timeout=300_000)  # the first page also loads the model
        metric = page.get_by_test_id("stMetricValue").first
        start = time.perf_counter()
        upload.set_input_files(str(photo))
        metric.wait_for(state="visible", timeout=300_000)
        seconds = time.perf_counter() - start
        return seconds, metric.inner_text()
    finally:
        page.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-eager":
        serve_eager(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_page"))
    parser.add_argument("--photos", type=positive_int, default=3)
    parser.add_argument("--kinds", default="before,fp32,auto,int8")
    args = parser.parse_args()
    from browsers import find_chromium  # tests/browsers.py: the Chromium the page tests use

    executable = find_chromium()
    if executable is None:
        raise SystemExit("no Chromium: run `make browser`")
    checkpoint, photos = write_inputs(args.out, args.photos)
    from playwright.sync_api import sync_playwright

    rows = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        for kind in args.kinds.split(","):
            with server(kind, checkpoint, args.out / f"serve_{kind}.log") as url:
                first, score = upload_to_score(browser, url, photos[0])
                times = []
                for photo in photos[1:]:
                    seconds, score = upload_to_score(browser, url, photo)
                    times.append(seconds)
                    print(f"  {kind}: {photo.name} {seconds:.2f} s ({score})", flush=True)
                rows[kind] = (first, statistics.median(times))
        browser.close()
    base = rows.get("before", next(iter(rows.values())))[1]
    print("| page | first upload s | upload -> score s (median) | speed-up |")
    print("| --- | --- | --- | --- |")
    for kind, (first, median) in rows.items():
        print(f"| {kind} | {first:.2f} | {median:.2f} | {base / median:.2f} |")


if __name__ == "__main__":
    main()
