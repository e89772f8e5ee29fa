"""The web page (Streamlit): upload a home-office photo, see the annotated image, the objects found
and the office score with its breakdown.

Started by `officescore serve`, which runs `streamlit run officescore/app.py` headless and passes
the model, device, rubric and default confidence through OFFICESCORE_* environment variables.
Importing this module has no side effects; the page runs only as Streamlit's main script.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from officescore.errors import BadImageError, UserError

ENV_MODEL = "OFFICESCORE_MODEL"
ENV_DEVICE = "OFFICESCORE_DEVICE"
ENV_CONF = "OFFICESCORE_CONF"
ENV_RUBRIC = "OFFICESCORE_RUBRIC"
ENV_PRECISION = "OFFICESCORE_PRECISION"
ENV_CALIBRATION = "OFFICESCORE_CALIBRATION"  # int8's calibration photos, os.pathsep-separated
MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024


@dataclass(frozen=True)
class PageSettings:
    model: str
    device: str = "auto"
    conf: float = 0.5
    rubric: str | None = None
    precision: str = "auto"
    calibration: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> PageSettings:
        env = dict(os.environ) if env is None else env
        return cls(
            model=env.get(ENV_MODEL) or "coco",
            device=env.get(ENV_DEVICE) or "auto",
            conf=float(env.get(ENV_CONF) or 0.5),
            rubric=env.get(ENV_RUBRIC) or None,
            precision=env.get(ENV_PRECISION) or "auto",
            calibration=tuple(p for p in (env.get(ENV_CALIBRATION) or "").split(os.pathsep) if p),
        )

    def to_env(self) -> dict[str, str]:
        env = {
            ENV_MODEL: self.model,
            ENV_DEVICE: self.device,
            ENV_CONF: str(self.conf),
            ENV_PRECISION: self.precision,
        }
        if self.rubric:
            env[ENV_RUBRIC] = self.rubric
        if self.calibration:
            env[ENV_CALIBRATION] = os.pathsep.join(self.calibration)
        return env


SLIDER_RANGE = (0.05, 0.95)
SLIDER_STEP = 0.05
SCORE_HELP = (
    "Each object found earns its class's points (the breakdown; a second one of a class earns half as "
    "much, up to the class's cap). The standard classes make full marks, scaled to 100; bonus ones add "
    "on top, never past 100. While an essential is missing the score is capped."
)


def slider_start(conf: float) -> float:
    """The slider's first position: `serve --conf` clipped to the slider's range (Streamlit refuses
    a value outside it, which would break the whole page)."""
    low, high = SLIDER_RANGE
    return min(max(float(conf), low), high)


def slider_steps(conf: float) -> list[float]:
    """The slider's positions: SLIDER_STEP apart across SLIDER_RANGE, and `serve --conf` (clipped to
    the range) among them, so a move away from a --conf between the steps (0.07) can come back to
    it without a reload."""
    low, high = SLIDER_RANGE
    count = round((high - low) / SLIDER_STEP)
    grid = {round(low + k * SLIDER_STEP, 2) for k in range(count + 1)}
    return sorted(grid | {slider_start(conf)})


def slider_label(value: float) -> str:
    """A position as the slider shows it: 0.50, and 0.075 with the digits it needs."""
    return f"{value:.2f}" if round(value, 2) == value else f"{value:g}"


def accepted_types() -> tuple[str, ...]:
    """The photo types `officescore score` reads, as the uploader's extensions: HEIC/HEIF (phones)
    with officescore[heic], AVIF where the installed Pillow reads it."""
    from PIL import Image

    from officescore.images import IMAGE_SUFFIXES  # registers HEIF with Pillow when it can

    readable = Image.registered_extensions()
    return tuple(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES if suffix in readable)


def check_upload(name: str, size: int) -> None:
    """Refuse files that are not a photo type score reads by name, or larger than 20 MB, with a message
    (each upload on its own: Streamlit's `server.maxUploadSize` is per file too)."""
    suffix = Path(name).suffix.lower().lstrip(".")
    accepted = accepted_types()
    if suffix not in accepted:
        raise BadImageError(f"{name}: not a photo type this page reads ({', '.join(accepted)})")
    if size > MAX_UPLOAD_BYTES:
        raise BadImageError(f"{name}: {size / 1024 / 1024:.1f} MB is over the {MAX_UPLOAD_MB} MB limit")
    if size == 0:
        raise BadImageError(f"{name}: empty file (0 bytes)")


@contextmanager
def _upload_file(data: bytes, name: str) -> Iterator[Path]:
    """The upload as a file under its own name (decoded from a file as `score` decodes one); a
    BadImageError names the upload, not the temporary file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        try:
            yield path
        except BadImageError as exc:
            raise BadImageError(str(exc).replace(str(path), name)) from None


def detect_upload(predictor: Any, data: bytes, name: str, conf: float = SLIDER_RANGE[0]) -> Any:
    """An uploaded photo's detections, decoded from a file as `officescore score` decodes it: a
    large JPEG in draft mode at the model's size, not decoded whole and resized, which gave the
    page other pixels, so other detections and at times another score, than the command."""
    with _upload_file(data, name) as path:
        result = predictor.predict([path], conf=conf, workers=0)[0]
        if result.error:
            raise BadImageError(result.error)
    result.source = name
    return result


def shown_photo(data: bytes, name: str) -> Any:
    """The upload as the page draws it: decoded at about the drawing's width (`load_for_model`, so
    EXIF-upright, with score's truncation and bomb checks), not whole: drawn from a 48 MP photo,
    every mask was decoded at 48 MP on each move of the slider (9 s for 11 objects)."""
    from officescore.images import load_for_model
    from officescore.infer.drawing import PAGE_WIDTH

    with _upload_file(data, name) as path:
        return load_for_model(path, PAGE_WIDTH, PAGE_WIDTH).image


def streamlit_command(
    settings: PageSettings, port: int = 8501, host: str = "127.0.0.1"
) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment for a headless, telemetry-free `streamlit run` of this page."""
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("the web page needs Streamlit: pip install 'officescore[app]'")
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: must be 1-65535")
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(Path(__file__).resolve()),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.maxUploadSize",
        str(MAX_UPLOAD_MB),
        "--server.fileWatcherType",
        "none",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]
    return argv, settings.to_env()


# --------------------------------------------------------------------------- the page


def _page() -> None:  # pragma: no cover - exercised through a real browser in tests/test_app.py
    import streamlit as st
    from PIL import Image

    from officescore.infer import ImageResult, Predictor
    from officescore.infer.predictor import on_pixels
    from officescore.infer.score import Rubric, score_office

    settings = PageSettings.from_env()
    st.set_page_config(page_title="officescore", layout="wide")
    st.title("How well equipped is this home office?")
    st.caption(f"model: {settings.model}")

    @st.cache_resource(show_spinner="Loading the model...")
    def predictor(source: str, device: str, precision: str, calibration: tuple[str, ...] = ()) -> Predictor:
        return Predictor.load(source, device=device, conf=0.0, precision=precision, calibration=calibration)

    @st.cache_resource
    def rubric(path: str | None) -> Rubric:
        return Rubric.load(path)

    @st.cache_resource(max_entries=16)
    def photo(data: bytes, name: str) -> Image.Image:
        return shown_photo(data, name)  # once per upload, not on every slider move

    @st.cache_data(max_entries=16, show_spinner="Finding objects...")
    def detect(
        data: bytes, name: str, source: str, device: str, precision: str
    ) -> tuple[ImageResult, ImageResult]:
        # Masks only for what the slider can show (its lowest position and up); the second result
        # is the first at the shown photo's size, for drawing (masks scaled once per upload).
        result = detect_upload(predictor(source, device, precision, settings.calibration), data, name)
        shown = photo(data, name)
        return result, dataclasses.replace(result, detections=on_pixels(result, *shown.size))

    try:
        model = predictor(settings.model, settings.device, settings.precision, settings.calibration)
        rules = rubric(settings.rubric)
    except UserError as exc:
        st.error(str(exc))
        st.stop()
        return
    conf = st.select_slider(
        "Confidence threshold",
        options=slider_steps(settings.conf),
        value=slider_start(settings.conf),
        format_func=slider_label,
        key="conf",
    )
    uploads = st.file_uploader(
        f"Upload photos (one or several at once; each up to {MAX_UPLOAD_MB} MB)",
        type=list(accepted_types()),
        accept_multiple_files=True,
    )
    if not uploads:
        st.info("Upload photos of a home office to score them.")
        return
    # In the order chosen; a bad file gets its own one-line error and the others are still scored.
    for number, upload in enumerate(uploads):
        if number:
            st.divider()
        try:
            check_upload(upload.name, upload.size)
            image = photo(upload.getvalue(), upload.name)
            raw, drawable = detect(
                upload.getvalue(), upload.name, settings.model, settings.device, settings.precision
            )
        except UserError as exc:
            st.error(str(exc))
            continue
        result = raw.above(conf)
        office = score_office(result.detections, rules)
        st.subheader(upload.name)
        _render(st, image, result, drawable.above(conf).detections, office, rules, model.classes, conf)


def objects_table(detections: Sequence[Any], classes: Sequence[str] = ()) -> Any:
    """The objects found, best first, as a pandas Styler whose class cells carry the class colour
    the photo uses (so a row and its mask are matched by colour)."""
    import pandas as pd

    from officescore.infer.drawing import class_colour, class_colour_hex, text_colour

    rows = [
        {
            "class": d.class_name,
            "score": f"{d.score:.3f}",
            "share of image": f"{d.share:.1%}",
            "box": ", ".join(f"{v:.0f}" for v in d.box),
            "attributes": d.attributes_text(),  # "armrests", "floor"
        }
        for d in sorted(detections, key=lambda d: -d.score)
    ]
    frame = pd.DataFrame(rows, columns=["class", "score", "share of image", "box", "attributes"])

    def colours(name: str) -> str:
        ink = "#000000" if text_colour(class_colour(name, classes)) == (0, 0, 0) else "#ffffff"
        return f"background-color: {class_colour_hex(name, classes)}; color: {ink}"

    return frame.style.map(colours, subset=["class"]).hide(axis="index")


def breakdown_table(office: Any, rubric: Any) -> Any:
    """The breakdown as `score` prints it (`desk (essential)`, `lamp (bonus)`), as a pandas Styler;
    an essential whose group was not found reads `monitor (essential, missing)`, in red."""
    import pandas as pd

    from officescore.infer.score import missing_essential_classes, row_name

    missing = missing_essential_classes(office, rubric)
    rows = [
        {
            "class": row_name(r, r.class_name in missing),
            "count": r.count,
            "points": r.earned,
            "of": r.possible,
        }
        for r in office.breakdown
    ]
    rows += [
        {"class": f"{r.rule} (bonus)", "count": r.count, "points": r.earned, "of": r.possible}
        for r in office.attributes
    ]
    frame = pd.DataFrame(rows, columns=["class", "count", "points", "of"])

    def red(name: str) -> str:
        return "color: #d62728; font-weight: bold" if name.endswith(", missing)") else ""

    return frame.style.map(red, subset=["class"]).format("{:g}", subset=["points", "of"]).hide(axis="index")


def breakdown_legend(rubric: Any) -> str:
    """What the breakdown's marks mean for this rubric: its essentials (a group: its classes) and
    the cap while one is missing; bonus points."""
    groups = [
        e.name if len(e.any_of) < 2 else f"{e.name} ({' or '.join(e.any_of)})" for e in rubric.essentials
    ]
    legend = []
    if groups:
        cap = rubric.missing_essential_cap
        capped = (
            f"while one is missing, the score is capped at {cap:g}" if cap < 100 else "missing ones are named"
        )
        legend.append(f"(essential): {', '.join(groups)}; {capped}.")
    legend.append("(bonus): points on top of full marks, never past 100.")
    return " ".join(legend)


def _render(  # pragma: no cover
    st: Any,
    image: Any,
    result: Any,
    drawn: Sequence[Any],
    office: Any,
    rubric: Any,
    classes: list[str],
    conf: float,
) -> None:
    """`drawn`: the detections of `result` at the shown photo's size; `conf`: the slider's threshold."""
    import io

    from PIL import Image
    from streamlit.errors import StreamlitAPIException

    from officescore.infer.drawing import PAGE_WIDTH, draw
    from officescore.infer.score import how_points_make_the_total

    left, right = st.columns([3, 2])
    with right:
        st.metric("Office score", f"{office.total:g}/100", help=SCORE_HELP)
        st.markdown(f"**{office.label}**")
        if result.too_small:  # as `score` warns: the model saw a blur of a few pixels
            st.warning(f"{result.too_small}; its score says little")
        cap_note = result.cap_note(conf)  # as `score` notes: the model's cap may have cut objects
        if cap_note:
            st.warning(cap_note)
        if office.missing_essentials:
            st.warning("Missing essentials: " + ", ".join(office.missing_essentials))
        how = how_points_make_the_total(office)  # the cap, the clip: why the points are not the score
        if how:
            st.caption(how)
        st.subheader("Breakdown")
        st.dataframe(breakdown_table(office, rubric), hide_index=True)
        st.caption(breakdown_legend(rubric))
        if office.suggestions:
            st.subheader("To raise the score")
            for suggestion in office.suggestions[:5]:
                st.markdown(f"- {suggestion.text}")
    with left:
        # Drawn at a fixed, generous width and shown at the column's width: small photos are
        # scaled up and large ones down, with lines and labels sized for what is seen.
        annotated = draw(image, drawn, office, width=PAGE_WIDTH, classes=classes)
        buffer = io.BytesIO()
        annotated.save(buffer, format="JPEG", quality=90)
        caption = f"{len(result.detections)} objects"
        try:
            st.image(Image.open(buffer), caption=caption, width="stretch")
        except (TypeError, StreamlitAPIException):  # older Streamlit: use_container_width
            st.image(Image.open(buffer), caption=caption, use_container_width=True)
        st.subheader("Objects")
        if result.detections:
            st.table(objects_table(result.detections, classes))
        else:
            st.caption("No objects above the confidence threshold.")
        st.caption("Classes this model knows: " + ", ".join(classes))


if __name__ == "__main__":
    _page()
