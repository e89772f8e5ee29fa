"""The web page: `officescore serve` in a real headless Chromium, plus the serve command's checks."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from browsers import INSTALL_HINT, find_chromium
from cpus import AVX2_ONLY
from PIL import Image
from scoremodels import write_checkpoint, write_scenes

from officescore import masks
from officescore.app import (
    MAX_UPLOAD_BYTES,
    PageSettings,
    check_upload,
    detect_upload,
    objects_table,
    shown_photo,
    slider_start,
    streamlit_command,
)
from officescore.cli import main
from officescore.errors import BadImageError, UserError
from officescore.images import HEIF_READABLE
from officescore.infer.drawing import PAGE_WIDTH, class_colour

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # screenshots kept (git-ignored)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("app")
    scene = write_scenes(root / "photos", n=1)[0]
    small = write_scenes(root / "small", n=1, size=192)[0]  # a 192 px photo: drawn much larger
    (root / "fake.png").write_text("a text file with an image name")
    (root / "notes.txt").write_text("not a photo")
    assert HEIF_READABLE, "the dev extra brings pillow-heif"
    with Image.open(scene) as photo:  # as phones save them
        photo.save(root / "phone.heic", format="HEIF", quality=90)
    (root / "huge.jpg").write_bytes(b"\xff\xd8" + bytes(MAX_UPLOAD_BYTES + 1024))
    return {
        "root": root,
        "scene": scene,
        "small": small,
        "phone": root / "phone.heic",
        "checkpoint": write_checkpoint(root / "best.pt", {"desk": 8.0, "chair": 7.0}),
    }


@pytest.fixture(scope="module")
def server(files: dict[str, Path]) -> Iterator[str]:
    """`officescore serve` on a free local port; stopped (with its Streamlit) at teardown."""
    port = _free_port()
    command = [sys.executable, "-m", "officescore", "serve", "--model", str(files["checkpoint"])]
    command += ["--port", str(port), "--device", "cpu", "--conf", "0.5"]
    log = files["root"] / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=files["root"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"officescore serve exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"officescore serve did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        yield None  # each web-page test then fails with the install hint (see _new_page)
        return
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _new_page(browser: object) -> object:
    if browser is None:  # never a skip: a machine without a browser must not pass in silence
        pytest.fail(INSTALL_HINT, pytrace=False)
    return browser.new_page(viewport={"width": 1280, "height": 900})


def _upload(page: object, path: Path) -> None:
    upload = page.locator('input[type="file"]')
    upload.wait_for(state="attached", timeout=90_000)  # the first page also loads the model
    upload.set_input_files(str(path))


def _cli_total(
    files: dict[str, Path], conf: float, capsys: pytest.CaptureFixture[str], photo: str = "scene"
) -> float:
    with pytest.raises(SystemExit) as info:
        main(["score", str(files[photo]), "--model", str(files["checkpoint"]), "--conf", str(conf), "--json"])
    assert info.value.code == 0
    return float(json.loads(capsys.readouterr().out)["photos"][0]["score"]["total"])


def _page_total(page: object) -> float:
    text = page.get_by_test_id("stMetricValue").first.inner_text()  # e.g. "25/100"
    assert text.endswith("/100"), text
    return float(text.removesuffix("/100"))


def test_page_score_equals_cli_score(
    server: str, browser: object, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    page = _new_page(browser)
    try:
        page.goto(server)
        _upload(page, files["scene"])
        page.get_by_test_id("stMetricValue").first.wait_for(timeout=90_000)
        at_half = _page_total(page)
        assert at_half == _cli_total(files, 0.5, capsys)
        page.get_by_test_id("stImage").first.wait_for(timeout=30_000)  # the annotated photo
        page.get_by_text("add a chair").first.wait_for(timeout=30_000)  # a suggestion (two name a chair)

        # The breakdown's marks, as `score`'s table has them, and what they mean.
        legend = "(essential): a desk, a chair, a screen (monitor or laptop); while one is missing, the score"
        page.get_by_text(legend).wait_for(timeout=30_000)
        cap_note = "20 objects found, the most this model keeps per photo"
        assert page.get_by_text(cap_note).count() == 0  # 14 above 0.5: under the model's cap of 20

        # Five steps of 0.05 down: the chairs (score about 0.27) now count as well.
        slider = page.get_by_role("slider")
        for _ in range(5):
            slider.press("ArrowLeft")
        cli_quarter = _cli_total(files, 0.25, capsys)
        assert cli_quarter != at_half
        page.wait_for_function(
            "want => document.querySelector('[data-testid=stMetricValue]').innerText === want",
            arg=f"{cli_quarter:g}/100",
            timeout=30_000,
        )
        assert _page_total(page) == cli_quarter
        # All 20 the model keeps are above 0.25 (the lowest 0.30): more may be missing, as `score` notes.
        page.get_by_text(f"{cap_note} (lowest score 0.30, threshold 0.25)").wait_for(timeout=30_000)
        # A desk and a chair, no screen: the points (45) are not the score, and the page says why
        # as `score` does (it showed 35/100 beside 45 points and said nothing of the cap).
        assert cli_quarter == 35
        why = "45 points of 100 full marks = 45/100, capped at 35 while an essential is missing"
        page.get_by_text(why).wait_for(timeout=30_000)
    finally:
        page.close()


def test_page_warns_of_a_photo_too_small_to_score_as_score_does(
    server: str, browser: object, tmp_path: Path
) -> None:
    """`score` warns that a 1x1 photo's score says little; the page showed its score and nothing else."""
    Image.new("RGB", (1, 1), (120, 90, 60)).save(tmp_path / "pixel.png")
    page = _new_page(browser)
    try:
        page.goto(server)
        _upload(page, tmp_path / "pixel.png")
        page.get_by_test_id("stMetricValue").first.wait_for(timeout=90_000)
        page.get_by_text("too small: 1x1 px; its score says little").wait_for(timeout=30_000)
    finally:
        page.close()


def test_page_scores_a_phone_photo_like_the_command(
    server: str, browser: object, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The page took JPEG, PNG and WebP only, so a phone's HEIC (and the GIF, BMP, TIFF, AVIF that
    `score` reads) was refused by name."""
    page = _new_page(browser)
    try:
        page.goto(server)
        _upload(page, files["phone"])
        page.get_by_test_id("stMetricValue").first.wait_for(timeout=90_000)
        assert _page_total(page) == _cli_total(files, 0.5, capsys, photo="phone") > 0
    finally:
        page.close()


def test_page_scores_several_photos_in_the_order_chosen_and_a_bad_one_alone(
    server: str, browser: object, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The page took one photo at a time. Several chosen at once are each scored (as `score` scores
    them) and shown with their breakdown in the order chosen; a bad file gets its own one-line error
    and the others are still scored. The size limit per file is said."""
    page = _new_page(browser)
    try:
        page.goto(server)
        upload = page.locator('input[type="file"]')
        upload.wait_for(state="attached", timeout=90_000)
        page.get_by_text(f"each up to {MAX_UPLOAD_BYTES // 1024 // 1024} MB").wait_for(timeout=30_000)
        chosen = [files["phone"], files["root"] / "fake.png", files["scene"]]
        upload.set_input_files([str(path) for path in chosen])
        metrics = page.get_by_test_id("stMetricValue")
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=stMetricValue]').length === 2", timeout=120_000
        )
        shown = [float(metrics.nth(i).inner_text().removesuffix("/100")) for i in range(2)]
        assert shown == [_cli_total(files, 0.5, capsys, photo="phone"), _cli_total(files, 0.5, capsys)]
        headings = [h for h in page.locator("h3").all_inner_texts() if h in ("phone.heic", "scene_0.jpg")]
        assert headings == ["phone.heic", "scene_0.jpg"]
        (alert,) = [a for a in page.get_by_test_id("stAlert").all_inner_texts() if "fake.png" in a]
        assert alert.strip().startswith("fake.png: not an image") and "\n" not in alert.strip()
        assert page.get_by_text("Breakdown").count() == 2
    finally:
        page.close()


def test_page_refuses_bad_uploads(server: str, browser: object, files: dict[str, Path]) -> None:
    page = _new_page(browser)
    try:
        page.goto(server)
        _upload(page, files["root"] / "fake.png")
        upload = page.locator('input[type="file"]')
        page.get_by_text("not an image Pillow can read").wait_for(timeout=60_000)
        assert "fake.png: not an image" in page.get_by_test_id("stAlert").first.inner_text()
        assert page.get_by_test_id("stMetricValue").count() == 0
        upload.set_input_files(str(files["root"] / "notes.txt"))
        page.get_by_text("files are not allowed").wait_for(timeout=30_000)
        upload.set_input_files(str(files["root"] / "huge.jpg"))
        page.get_by_text("20.0MB or smaller").wait_for(timeout=30_000)
    finally:
        page.close()


def _cli_detections(files: dict[str, Path], photo: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    with pytest.raises(SystemExit) as info:
        main(["score", str(photo), "--model", str(files["checkpoint"]), "--conf", "0.5", "--json"])
    assert info.value.code == 0
    return json.loads(capsys.readouterr().out)["photos"][0]["detections"]


def _toward(shown: np.ndarray, photo: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Per pixel, how far the shown colour moved from the photo toward `colour` (0: not, 1: all)."""
    direction = colour[None, None, :] - photo
    length = (direction**2).sum(axis=2)
    return ((shown - photo) * direction).sum(axis=2) / np.maximum(length, 1.0), length


def test_page_draws_the_photo_at_column_width_in_class_colours(
    server: str, browser: object, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 192 px photo fills the column (>= 600 px), its masks are filled with the class colour
    inside their boxes (checked on a screenshot, kept in test-artifacts/), and the objects table
    colours each class like the photo."""
    page = _new_page(browser)
    try:
        page.goto(server)
        _upload(page, files["small"])
        image = page.get_by_test_id("stImage").locator("img").first
        image.wait_for(timeout=90_000)
        page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=image.element_handle())
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
        image.screenshot(path=str(ARTIFACTS / "page-photo.png"))
        shown_box = image.bounding_box()
        assert shown_box["width"] >= 600, shown_box  # 192 px photo, scaled up to the column
        natural = page.evaluate("el => [el.naturalWidth, el.naturalHeight]", image.element_handle())
        assert natural == [PAGE_WIDTH, PAGE_WIDTH]  # drawn at the page's drawing width, not 192 px

        detections = _cli_detections(files, files["small"], capsys)
        assert detections and {d["class"] for d in detections} == {"desk"}
        shot = Image.open(ARTIFACTS / "page-photo.png").convert("RGB")
        size = shot.size
        shown = np.asarray(shot, dtype=float)
        photo = np.asarray(
            Image.open(files["small"]).convert("RGB").resize(size, Image.BILINEAR), dtype=float
        )
        colour = np.array(class_colour("desk"), dtype=float)
        toward, contrast = _toward(shown, photo, colour)
        scale = size[0] / 192
        below_banner = np.zeros(size[::-1], dtype=bool)
        below_banner[round(size[1] * 60 / PAGE_WIDTH) :] = True  # the score banner is along the top
        best = max(detections, key=lambda d: d["score"])
        mask = np.asarray(
            Image.fromarray(masks.decode(best["mask"]) * 255).resize(size, Image.NEAREST), dtype=bool
        )
        x0, y0, x1, y1 = (round(v * scale) for v in best["box"])
        in_box = np.zeros_like(mask)
        in_box[y0:y1, x0:x1] = True
        inside = mask & in_box & below_banner & (contrast > 60**2)
        assert inside.sum() > 200
        # Filled with the class colour at about FILL_ALPHA (outlines and labels are solid colour).
        assert 0.3 < np.median(toward[inside]) < 1.05, np.median(toward[inside])
        # Away from every box (and its label), the photo is shown as it is.
        near_any = np.zeros_like(mask)
        for d in detections:
            bx0, by0, bx1, by1 = (round(v * scale) for v in d["box"])
            near_any[max(0, by0 - round(12 * scale)) : by1 + 4, max(0, bx0 - 4) : bx1 + round(30 * scale)] = (
                True
            )
        outside = ~near_any & below_banner & (contrast > 60**2)
        assert outside.sum() > 200 and abs(np.median(toward[outside])) < 0.1

        # The objects table colours each class cell like the photo.
        table = page.get_by_test_id("stTable")
        table.screenshot(path=str(ARTIFACTS / "page-objects.png"))
        cell = table.locator("td", has_text="desk").first
        background = cell.evaluate("el => getComputedStyle(el).backgroundColor")
        assert background == "rgb({}, {}, {})".format(*class_colour("desk"))
    finally:
        page.close()


# --------------------------------------------------------------------------- without a browser


def test_check_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    check_upload("office.JPG", 1000)
    check_upload("office.webp", MAX_UPLOAD_BYTES)
    for name in ("office.gif", "office.HEIC", "office.tiff", "office.bmp"):  # what `score` reads
        check_upload(name, 1000)
    with pytest.raises(BadImageError, match=r"office.svg: not a photo type this page reads \(jpg, jpeg, png"):
        check_upload("office.svg", 1000)
    without_heif = {k: v for k, v in Image.registered_extensions().items() if k not in (".heic", ".heif")}
    monkeypatch.setattr(Image, "registered_extensions", lambda: without_heif)
    check_upload("office.jpg", 1000)
    with pytest.raises(BadImageError, match="not a photo type"):  # no officescore[heic]
        check_upload("office.heic", 1000)
    with pytest.raises(BadImageError, match="over the 20 MB limit"):
        check_upload("office.png", MAX_UPLOAD_BYTES + 1)
    with pytest.raises(BadImageError, match="empty file"):
        check_upload("office.png", 0)


def test_the_page_detects_a_large_jpeg_as_the_command_does(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A JPEG over twice the model's size is decoded in draft mode by `score`; the page decoded it
    whole and resized it, so its pixels, detections and at times its score were not the command's."""
    from officescore.infer import Predictor

    photo = write_scenes(files["root"] / "large", n=1, size=512)[0]  # the model's size is 128
    predictor = Predictor.load(str(files["checkpoint"]), device="cpu", conf=0.0, precision="fp32")
    page = detect_upload(predictor, photo.read_bytes(), "office.jpg", conf=0.5)
    with pytest.raises(SystemExit) as info:
        main(
            ["score", str(photo), "--model", str(files["checkpoint"]), "--conf", "0.5"]
            + ["--precision", "fp32", "--device", "cpu", "--json"]
        )
    assert info.value.code == 0
    command = json.loads(capsys.readouterr().out)["photos"][0]
    assert page.detections and (page.width, page.height) == (command["width"], command["height"])
    shown = [(d.class_name, round(d.score, 4), [round(v, 2) for v in d.box]) for d in page.detections]
    assert shown == [(d["class"], d["score"], d["box"]) for d in command["detections"]]


def test_a_bad_upload_names_the_upload_not_a_temporary_file(files: dict[str, Path]) -> None:
    from officescore.infer import Predictor

    predictor = Predictor.load(str(files["checkpoint"]), device="cpu", conf=0.0, precision="fp32")
    with pytest.raises(BadImageError, match=r"^office\.jpg: not an image Pillow can read$"):
        detect_upload(predictor, b"not a photo", "office.jpg")


def test_the_page_draws_a_large_photo_from_pixels_at_its_drawing_width(tmp_path: Path) -> None:
    """Drawn from the whole photo, each of its masks was decoded at full size on every move of the
    slider (9 s for 11 objects on a 48 MP photo); upright as `score` sees it (EXIF orientation 6)."""
    scene = Image.new("RGB", (3000, 2000), (200, 120, 40))
    scene.save(tmp_path / "wide.jpg", quality=80)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored portrait, shown landscape
    scene.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.jpg", exif=exif.tobytes())
    for name in ("wide.jpg", "turned.jpg"):
        assert shown_photo((tmp_path / name).read_bytes(), name).size == (PAGE_WIDTH, 853)
    small = write_scenes(tmp_path / "small", n=1, size=192)[0]
    assert shown_photo(small.read_bytes(), "small.jpg").size == (192, 192)  # small ones whole
    with pytest.raises(BadImageError, match=r"^office\.png: not an image Pillow can read$"):
        shown_photo(b"not a photo", "office.png")


def test_an_upload_is_read_under_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its suffix is what says a HEIC upload needs the heic extra (as `score` says of a file)."""
    from officescore import images

    monkeypatch.setattr(images, "HEIF_READABLE", False)  # as without officescore[heic]
    with pytest.raises(BadImageError, match=r"^phone\.heic: a HEIC/HEIF photo; pip install"):
        shown_photo(b"ftypheic, as far as Pillow can tell", "phone.heic")


def test_the_page_reads_a_jpeg_over_the_pixel_limit_as_score_does(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """`score` reads a 108 MP phone JPEG in draft mode; the page decoded uploads whole and refused
    one as "too many pixels (possible decompression bomb)"."""
    from officescore.infer import Predictor

    photo = tmp_path / "phone.jpg"
    Image.new("L", (9500, 9500), 128).save(photo, quality=50)  # 90.25 MP, over Pillow's 89.5 MP
    data = photo.read_bytes()
    assert shown_photo(data, "phone.jpg").size == (PAGE_WIDTH, PAGE_WIDTH)
    predictor = Predictor.load(str(files["checkpoint"]), device="cpu", conf=0.0, precision="fp32")
    assert detect_upload(predictor, data, "phone.jpg").width == 9500


def test_the_objects_table_shows_attributes_not_a_score_for_a_class_of_two_words() -> None:
    """ "office chair 0.90" split at spaces put the score in the attributes column."""
    from officescore.infer import Detection

    mask = masks.encode(np.ones((10, 10), np.uint8))
    found = [
        Detection("office chair", 0.9, [0.0, 0.0, 5.0, 5.0], mask, 0.1, attributes={"armrests": True}),
        Detection("standing desk", 0.8, [0.0, 0.0, 5.0, 5.0], mask, 0.1),
        Detection("chair", 0.7, [0.0, 0.0, 5.0, 5.0], mask, 0.1, attributes={"armrests": False}),
    ]
    assert list(objects_table(found).data["attributes"]) == ["armrests", "", "no armrests"]


def test_the_objects_table_writes_light_ink_on_dark_class_colours() -> None:
    from officescore import DEFAULT_CLASSES
    from officescore.infer import Detection
    from officescore.infer.drawing import text_colour

    mask = masks.encode(np.ones((10, 10), np.uint8))
    found = [Detection(name, 0.5, [0.0, 0.0, 5.0, 5.0], mask, 0.1) for name in DEFAULT_CLASSES]
    dark = {name: text_colour(class_colour(name)) != (0, 0, 0) for name in DEFAULT_CLASSES}
    assert set(dark.values()) == {True, False}  # the office classes have both
    html = objects_table(found).to_html()
    assert set(re.findall(r"(?<!-)color: (#[0-9a-f]{6})", html)) == {"#ffffff", "#000000"}  # not background-


def test_the_breakdown_marks_essentials_as_score_does_and_the_missing_ones_in_red(tmp_path: Path) -> None:
    """The page's breakdown had a bonus column and no word of essentials: `desk (essential)` as
    `score` prints it, `monitor (essential, missing)` (both classes of a missing screen) in red."""
    from officescore.app import breakdown_legend, breakdown_table
    from officescore.infer.score import Rubric, score_office

    rubric = Rubric.load()
    styled = breakdown_table(score_office({"desk": 1, "lamp": 1}, rubric), rubric)
    names = list(styled.data["class"])
    assert names[:4] == [
        "desk (essential)",
        "chair (essential, missing)",
        "monitor (essential, missing)",
        "laptop (essential, missing)",
    ]
    assert "keyboard" in names and "lamp (bonus)" in names and "chair.armrests=yes (bonus)" in names
    css = styled.to_html().split("</style>")[0]  # "#T_x_row1_col0, ... {\n  color: #d62728; ..."
    styled_rows = {int(row) for row in re.findall(r"_row(\d+)_col\d", css)}
    assert styled_rows == {1, 2, 3} and "color: #d62728" in css  # only the missing essentials' cells
    with_laptop = breakdown_table(score_office({"desk": 1, "chair": 1, "laptop": 1}, rubric), rubric)
    assert not any("missing" in name for name in with_laptop.data["class"])  # a laptop is a screen
    assert breakdown_legend(rubric).startswith(
        "(essential): a desk, a chair, a screen (monitor or laptop); while one is missing, the score is "
        "capped at 35."
    )
    uncapped = tmp_path / "uncapped.toml"
    uncapped.write_text('[[essentials]]\nname = "a desk"\nany_of = ["desk"]\n[classes.desk]\npoints = 10\n')
    assert breakdown_legend(Rubric.load(uncapped)).startswith("(essential): a desk; missing ones are named.")


def test_the_breakdown_shows_points_as_score_does_and_a_rubric_without_essentials_names_none(
    tmp_path: Path,
) -> None:
    """The page's points read 25 as `score` prints them, not pandas' 25.000000; a rubric with no
    essentials gets no empty `(essential): ;` mark in the legend, only the bonus one."""
    from officescore.app import breakdown_legend, breakdown_table
    from officescore.infer.score import Rubric, score_office

    rubric = Rubric.load()
    html = breakdown_table(score_office({"desk": 1}, rubric), rubric).to_html()
    assert re.findall(r'row0 col[23]" >([^<]*)<', html) == ["25", "25"]  # desk: points, of
    plain = tmp_path / "plain.toml"
    plain.write_text("[classes.desk]\npoints = 10\n")
    assert breakdown_legend(Rubric.load(plain)) == "(bonus): points on top of full marks, never past 100."


def test_the_slider_can_come_back_to_a_conf_between_its_steps(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --conf 0.07` started the slider at 0.07, but its positions were 0.05, 0.10, ...: once
    moved, only a reload brought 0.07 back. The served --conf is now a position of its own."""
    from streamlit.testing.v1 import AppTest

    from officescore.app import slider_steps

    assert slider_steps(0.07)[:3] == [0.05, 0.07, 0.1] and len(slider_steps(0.07)) == 20
    assert (
        slider_steps(0.5) == slider_steps(0.3) and len(slider_steps(0.5)) == 19
    )  # on the steps: as they are
    assert slider_steps(0.0)[0] == 0.05 and slider_steps(1.0)[-1] == 0.95  # clipped, as the start is
    settings = PageSettings(model=str(files["checkpoint"]), device="cpu", conf=0.07, precision="fp32")
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    page = AppTest.from_file(str(Path(__file__).parents[1] / "officescore" / "app.py"), default_timeout=120)
    page.run()
    slider = page.select_slider(key="conf")
    assert slider.value == 0.07 and slider.options[:3] == ["0.05", "0.07", "0.10"]
    slider.set_value(0.1).run()
    assert page.select_slider(key="conf").value == 0.1
    page.select_slider(key="conf").set_value(0.07).run()  # one step back: the served --conf again
    assert page.select_slider(key="conf").value == 0.07 and not page.exception


def test_the_slider_shows_a_conf_between_its_steps_with_the_digits_it_needs() -> None:
    """`serve --conf 0.075`: its position reads 0.075, not 0.07 or 0.08 (a neighbour's name)."""
    from officescore.app import slider_label, slider_steps

    assert [slider_label(v) for v in slider_steps(0.075)[:3]] == ["0.05", "0.075", "0.10"]


def test_slider_starts_inside_its_range() -> None:
    # serve refuses --conf outside the range, but OFFICESCORE_CONF may hold any value: the slider
    # must not get one it refuses
    assert slider_start(0.0) == 0.05 and slider_start(1.0) == 0.95 and slider_start(0.3) == 0.3


def test_streamlit_command_is_headless_without_telemetry() -> None:
    settings = PageSettings(
        model="/m/best.pt", device="cpu", conf=0.3, rubric="/r.toml", calibration=("/a.jpg", "/b.jpg")
    )
    argv, env = streamlit_command(settings, port=8123, host="127.0.0.1")
    pairs = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("officescore/app.py")
    assert pairs["--server.headless"] == "true"
    assert pairs["--browser.gatherUsageStats"] == "false"
    assert (pairs["--server.address"], pairs["--server.port"]) == ("127.0.0.1", "8123")
    assert pairs["--server.maxUploadSize"] == "20"
    assert PageSettings.from_env(env) == settings
    assert PageSettings.from_env({}) == PageSettings(model="coco")


def test_serve_without_streamlit_is_a_friendly_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "streamlit" else real(name))
    with pytest.raises(UserError, match=r"pip install 'officescore\[app\]'"):
        streamlit_command(PageSettings(model="coco"))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "nowhere.pt"], "--model nowhere.pt: no such model file"),
        (["--model", "coco", "--conf", "3"], "--conf 3.0: the page's slider runs from 0.05 to 0.95"),
        (["--model", "coco", "--conf", "0.99"], "--conf 0.99: the page's slider runs from 0.05 to 0.95"),
        (["--model", "coco", "--conf", "0"], "--conf 0.0: the page's slider runs from 0.05 to 0.95"),
        (
            ["--model", "coco", "--precision", "int8", "--calibration", "nope/"],
            "--calibration nope/: no photos there; --precision int8 calibrates",
        ),
        (["--model", "coco", "--precision", "int8"], "error: --precision int8 calibrates on photos"),
        (["--model", "coco", "--port", "70000"], "--port 70000: must be 1-65535"),
        # Another machine's address was "--port 8501: ... is another server on it?"
        (["--model", "coco", "--host", "192.0.2.1"], "--host 192.0.2.1: not an address of this machine"),
    ],
)
def test_serve_bad_options(
    args: list[str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cpu_flags: Callable[[frozenset[str]], None],
) -> None:
    """--conf the page's slider cannot start at was clipped to its range without a word."""
    cpu_flags(AVX2_ONLY)  # int8 runs here, so --calibration is read
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not start streamlit"))
    with pytest.raises(SystemExit) as info:
        main(["serve", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


def test_serve_an_onnx_file_says_what_score_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "not a readable weights file (UnpicklingError)", as for a damaged checkpoint."""
    (tmp_path / "office.onnx").write_bytes(b"\x08\x07onnx protobuf")
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not start streamlit"))
    with pytest.raises(SystemExit) as info:
        main(["serve", "--model", str(tmp_path / "office.onnx")])
    assert info.value.code == 2
    assert "office.onnx: an ONNX model (from `officescore export --format onnx`); ONNX exports are for" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("kind", ["checkpoint", "torchscript", "coco"])
def test_serve_warns_of_rubric_classes_the_model_cannot_detect_and_starts(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """`score` warned of a misspelt rubric class; the page capped every photo at 50 without a word
    (then for checkpoints only: TorchScript exports and `coco` still said nothing)."""
    model = _served_model(kind, files["checkpoint"], tmp_path, monkeypatch)
    typo = tmp_path / "typo.toml"
    typo.write_text("[classes.desk]\npoints = 50\n[classes.monitr]\npoints = 50\n")
    started: list[dict[str, str]] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:  # where streamlit would start
        started.append(env)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    args = ["--model", model, "--rubric", str(typo), "--port", str(_free_port())]
    with pytest.raises(SystemExit) as info:
        main(["serve", *args, "--device", "cpu"])
    assert info.value.code == 0 and started
    assert "warning: the model cannot detect monitr, in rubric typo" in capsys.readouterr().err


def _served_model(kind: str, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`--model` of this kind: the checkpoint, its TorchScript export, or `coco` (its weights faked in
    the hub cache: serve checks they are there, and never loads them)."""
    if kind == "torchscript":
        from officescore.export import export_model

        return str(export_model(checkpoint, "torchscript", tmp_path / "office.torchscript.pt").path)
    if kind == "coco":
        from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

        from officescore.model import hub_checkpoint_dir

        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        cached = hub_checkpoint_dir() / Path(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url).name
        cached.parent.mkdir(parents=True)
        cached.write_bytes(b"the weights, as fetched elsewhere")
        return "coco"
    return str(checkpoint)


def test_serve_coco_with_its_weights_in_the_hub_cache_starts_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The up-front check for `coco` looks where `score --model coco` loads the weights from: with the
    file in the hub cache, serve starts without trying to download anything."""
    import torch
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    from officescore.model import hub_checkpoint_dir

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = hub_checkpoint_dir() / Path(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url).name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"the weights, as fetched elsewhere")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **kw: pytest.fail("downloads"))

    started = []

    def execve(*args: object) -> None:  # where streamlit would replace the process
        started.append(args)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    with socket.socket() as probe:  # a port free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SystemExit) as info:
        main(["serve", "--model", "coco", "--port", str(port)])
    assert info.value.code == 0 and len(started) == 1


def test_the_ports_at_both_ends_are_ports() -> None:
    for port in (1, 65535):
        argv, _ = streamlit_command(PageSettings(model="coco"), port=port)
        assert argv[argv.index("--server.port") + 1] == str(port)


@pytest.mark.parametrize("conf", ["0.05", "0.95"])
def test_serve_starts_the_page_at_the_ends_of_its_slider(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, conf: str
) -> None:
    """--conf at either end of the slider's range is a threshold like any other: the page starts at it."""
    started: list[dict[str, str]] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:  # where streamlit would start
        started.append(env)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    args = [
        "--model",
        str(files["checkpoint"]),
        "--port",
        str(_free_port()),
        "--conf",
        conf,
        "--device",
        "cpu",
    ]
    with pytest.raises(SystemExit) as info:
        main(["serve", *args])
    assert info.value.code == 0 and PageSettings.from_env(started[0]).conf == float(conf)
