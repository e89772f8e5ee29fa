"""Shared building blocks: config, atomic files, safe image loading, mask encodings, devices."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cliroot import root_context
from PIL import Image

from officescore import masks
from officescore.cli import main
from officescore.cli.settings import command_defaults
from officescore.config import load_config, secret
from officescore.devices import resolve_device
from officescore.distributed import DistContext, gather_objects, shard
from officescore.errors import BadImageError, ConfigError
from officescore.files import atomic_write, atomic_write_json, sha256_file
from officescore.images import fit_for_model, image_size, load_for_model, load_image


def test_config_tables_become_default_map(tmp_path: Path) -> None:
    """Keys by option name (dashes or underscores) set their parameter, also one named otherwise than
    its flag (--near-dup-threshold sets near_dup); a secret is kept out of Click's defaults."""
    path = tmp_path / "officescore.toml"
    path.write_text(
        "[train]\nepochs = 3\nbatch-size = 4\n[scrape]\nper_query = 90\nnear-dup-threshold = 4\n"
        'flickr-api-key = "secret"\n[scrape.google]\ndaily-quota = 80\n[score]\ncsv_file = "old.csv"\n'
    )
    # [scrape.google]: a provider's quotas, read by the scrape (config.provider_quotas), not Click.
    # csv_file: score's parameter name, which a config written before flag names were read used.
    assert command_defaults(root_context(), load_config(path)) == {
        "train": {"epochs": 3, "batch_size": 4},
        "scrape": {"per_query": 90, "near_dup": 4},
        "score": {"csv_file": "old.csv"},
    }


def test_a_repeatable_option_set_once_in_the_config_file_is_a_list_of_one() -> None:
    """`[ingest] images = "photos"` for the repeatable --images: as `--images photos` typed once (Click
    refused the bare text: "Value must be an iterable")."""
    defaults = command_defaults(root_context(), {"ingest": {"images": "photos"}, "eval": {"iou": [0.6, 0.7]}})
    assert defaults["ingest"]["images"] == ["photos"] and defaults["eval"]["iou"] == [0.6, 0.7]


def test_a_commands_arguments_are_no_settings() -> None:
    """officescore.toml sets options only: a key named like an argument (score's photos) is refused,
    not handed to Click as the photos to score."""
    with pytest.raises(ConfigError, match=r"\[score\] photos is no setting of `officescore score`"):
        command_defaults(root_context(), {"score": {"photos": ["office.jpg"]}})


def test_config_missing_is_empty_and_broken_is_one_line_error(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.toml") == {}
    bad = tmp_path / "officescore.toml"
    bad.write_text("[train\nepochs=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad.write_text("epochs = 3\n")
    with pytest.raises(ConfigError, match="must be a table"):
        load_config(bad)


def test_secret_prefers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret of config.SECRETS: its environment variable, else its key in the config (dashes or
    underscores). That list is the one that names them: a key outside it is no secret."""
    config = {"scrape": {"gcs-cx": "from-file"}}
    monkeypatch.delenv("GCS_CX", raising=False)
    assert secret("scrape", "gcs_cx", config) == "from-file"
    monkeypatch.setenv("GCS_CX", "from-env")
    assert secret("scrape", "gcs_cx", config) == "from-env"
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    assert secret("scrape", "flickr_api_key", config) is None
    with pytest.raises(KeyError):
        secret("scrape", "google_key", config)  # not a secret: a setting, refused by the settings check


def test_a_secret_pasted_with_spaces_or_a_newline_is_the_key_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # "ukey\n" went into Unsplash's Authorization header: requests refused it (InvalidHeader), retried
    # three times on the hour's quota and said "Unsplash unreachable ... run again later"; "fkey " was
    # refused by Flickr as an invalid key.
    monkeypatch.setenv("UNSPLASH_ACCESS_KEY", "ukey\n")
    assert secret("scrape", "unsplash_access_key", {}) == "ukey"
    monkeypatch.setenv("FLICKR_API_KEY", "  ")  # blank: not set, the file's key is read
    assert secret("scrape", "flickr_api_key", {"scrape": {"flickr-api-key": " fkey "}}) == "fkey"


def test_config_is_read_from_officescore_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$OFFICESCORE_CONFIG names the file read instead of ./officescore.toml."""
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text("[train]\nepochs = 3\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "officescore.toml").write_text("[train]\nepochs = 5\n")
    monkeypatch.setenv("OFFICESCORE_CONFIG", str(elsewhere))
    assert load_config() == {"train": {"epochs": 3}}


def test_an_officescore_config_that_names_no_file_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in $OFFICESCORE_CONFIG would drop every setting unsaid; os.devnull still means none."""
    monkeypatch.setenv("OFFICESCORE_CONFIG", str(tmp_path / "oficescore.toml"))
    with pytest.raises(
        ConfigError, match=r"OFFICESCORE_CONFIG .*oficescore.toml: no such file; fix the path"
    ):
        load_config()
    with pytest.raises(SystemExit) as info:
        main(["stats", str(tmp_path)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: $OFFICESCORE_CONFIG")
    monkeypatch.setenv("OFFICESCORE_CONFIG", os.devnull)
    assert load_config() == {}


def test_a_bad_value_in_the_config_file_is_named_there_not_as_a_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Click's "Invalid value for '--epochs'" sends the user to a command line that has no --epochs."""
    config = tmp_path / "officescore.toml"
    config.write_text('[train]\nepochs = "x"\n[eval]\niou = [0.5, "a"]\n')
    monkeypatch.setenv("OFFICESCORE_CONFIG", str(config))
    for args, said in [
        (["train", "--data", str(tmp_path)], 'epochs = "x" for `officescore train`: '),
        (["eval", "--model", "m.pt"], 'iou = [0.5, "a"] for `officescore eval`: '),
    ]:
        with pytest.raises(SystemExit) as info:
            main(args)
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and "\n" not in err, err
        assert err.startswith(f"error: {config}: {said}"), err
    with pytest.raises(SystemExit) as info:  # typed on the command line: Click's own words name it
        main(["train", "--data", str(tmp_path), "--epochs", "y"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Invalid value for '--epochs'" in err and str(config) not in err


def test_config_that_is_not_utf8_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "officescore.toml"
    bad.write_bytes(b'[train]\nname = "caf\xe9"\n')  # saved as Latin-1
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Windows Notepad and PowerShell 5 save "UTF-8" with one: it was "not valid TOML" at line 1, column 1.
    path = tmp_path / "officescore.toml"
    path.write_bytes(b"\xef\xbb\xbf[scrape]\r\nper-query = 10\r\n")
    assert load_config(path) == {"scrape": {"per-query": 10}}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "doc.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}  # old content survives a failed write
    assert [p.name for p in target.parent.iterdir()] == ["doc.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_current_umask()  # not mkstemp's private 0600
    assert len(sha256_file(target)) == 64


def test_a_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    """Half-written and stopped (a full disk, Ctrl-C): the file keeps its old content and no
    hidden temp file is left beside it."""
    target = tmp_path / "doc.json"
    atomic_write_json(target, {"a": 1})

    def half(handle: Any) -> None:
        handle.write(b'{"a": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_load_image_respects_exif_orientation(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: displayed as 20 x 40
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert image_size(path) == (20, 40)
    assert load_image(path).size == (20, 40)


def test_16_bit_grey_photos_keep_their_tones(tmp_path: Path) -> None:
    """A 16-bit grey PNG decodes to the 8-bit photo it holds, not to white (Pillow clips at 255)."""
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint16), (16, 1))  # 16 x 64 ramp
    path = tmp_path / "grey16.png"
    Image.fromarray(grey * 257).save(path)
    with Image.open(path) as opened:
        assert opened.mode.startswith("I;16")
        in_memory = fit_for_model(opened, 800, 1333).image  # an uploaded photo (the web page)
    for decoded in (load_image(path), load_for_model(path, 800, 1333).image, in_memory):
        assert decoded.mode == "RGB"
        assert np.abs(np.asarray(decoded)[..., 1].astype(int) - grey).max() <= 1


def test_float_grey_photos_of_0_to_1_keep_their_tones(tmp_path: Path) -> None:
    """A float TIFF (mode F) with tones 0-1, as scientific and HDR tools write them, decoded
    near-black (Pillow rounds 0.5 to 0); one holding 0-255 stays as it is."""
    # white included: the brightest tone of a 0-1 photo is 1.0 itself
    ramp = np.tile(np.append(np.arange(0, 256, 4), 255).astype(np.float32), (16, 1))
    for scale, name in ((1 / 255, "unit.tif"), (1.0, "bytes.tif")):
        path = tmp_path / name
        Image.fromarray(ramp * scale, mode="F").save(path)
        with Image.open(path) as opened:
            assert opened.mode == "F"
        decoded = np.asarray(load_image(path))[..., 1].astype(int)
        assert np.abs(decoded - ramp).max() <= 1, name


@pytest.mark.parametrize(
    ("name", "values", "scale"),
    [
        ("big-endian.tif", ">u2", 257),  # Pillow: mode I;16B (Mac and scanner TIFFs)
        ("grey16.pgm", "<u2", 257),  # mode I, values above 255
        ("int32.tif", "<i4", 1),  # mode I holding 8-bit values: already the photo's tones
    ],
)
def test_every_deep_grey_mode_keeps_its_tones(tmp_path: Path, name: str, values: str, scale: int) -> None:
    grey = np.tile(np.arange(0, 256, 4), (16, 1))  # 16 x 64 ramp up to 252, then the 255 row
    grey = np.vstack([grey, np.full((1, 64), 255)])
    path = tmp_path / name
    Image.fromarray((grey * scale).astype(values)).save(path)
    with Image.open(path) as opened:
        assert opened.mode in ("I;16B", "I")
    assert np.abs(np.asarray(load_image(path))[..., 0].astype(int) - grey).max() <= 1


def test_16_bit_grey_photos_keep_their_tones_everywhere_they_are_read(tmp_path: Path) -> None:
    """The other readers of photos: a click's photo from Label Studio, a scraped photo's perceptual
    hash (so duplicates are found), and the drawing of a score, all see the 8-bit photo."""
    from officescore.infer.drawing import draw
    from officescore.label.interactive.clicker import _decode
    from officescore.scrape.download import DownloadConfig, verify_image

    rows = np.random.default_rng(0).integers(0, 256, (32, 32)).repeat(8, axis=0).repeat(8, axis=1)
    deep, flat = tmp_path / "deep.png", tmp_path / "flat.png"
    Image.fromarray((rows * 257).astype(np.uint16)).save(deep)
    Image.fromarray(rows.astype(np.uint8)).save(flat)
    assert np.abs(_decode(deep.read_bytes(), "deep.png")[..., 0].astype(int) - rows).max() <= 1
    config = DownloadConfig()
    assert verify_image(deep, config)[3] == verify_image(flat, config)[3]  # the same phash
    with Image.open(deep) as opened:
        drawn = np.asarray(draw(opened, []))[..., 0].astype(int)
    assert np.abs(drawn - rows).max() <= 1


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"<html>not an image</html>", "not an image"), (None, "no such file")],
)
def test_load_image_bad_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadImageError, match=message):
        load_image(path)


def test_load_image_truncated_and_bomb(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:400])
    with pytest.raises(BadImageError):
        load_image(truncated)
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(good, max_pixels=1000)


def test_mask_round_trips() -> None:
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:15, 10:30] = 1
    rle = masks.encode(mask)
    assert isinstance(rle["counts"], str)
    assert np.array_equal(masks.decode(rle), mask)
    assert masks.area(rle) == 200
    assert masks.bbox(rle) == [10.0, 5.0, 20.0, 10.0]
    polygon = masks.from_polygons([[10, 5, 30, 5, 30, 15, 10, 15]], 30, 40)
    # an axis-aligned rectangle on pixel edges rasterises to exactly the pixels inside it
    assert np.array_equal(masks.decode(polygon), mask) and masks.area(polygon) == 200
    uncompressed = {"size": [30, 40], "counts": [0, 1200]}
    assert masks.area(masks.normalise(uncompressed)) == 1200  # 0 zeros, then 1200 ones


def test_mask_iou_on_rles() -> None:
    """A 10x20 box against one shifted 5 px right (150 / 250 shared) and against itself; a mask of
    another size counts 0 (pycocotools says -1), and an empty list gives an empty matrix."""
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:15, 10:30] = 1
    shifted = np.roll(mask, 5, axis=1)
    other_size = np.zeros((31, 40), dtype=np.uint8)
    other_size[5:15, 10:30] = 1
    found = masks.iou(
        [masks.encode(mask)], [masks.encode(shifted), masks.encode(mask), masks.encode(other_size)]
    )
    assert found.shape == (1, 3) and found[0] == pytest.approx([150 / 250, 1.0, 0.0])
    assert masks.iou([], [masks.encode(mask)]).shape == (0, 1)


def test_mask_resize_is_nearest_and_reads_width_then_height() -> None:
    """Resized nearest to twice the size, each pixel becomes 2 x 2; asked for the size it has, the
    mask comes back as it is; asked for its size turned (30 wide, 40 high), it is resized."""
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:15, 10:30] = 1
    rle = masks.encode(mask)
    assert np.array_equal(masks.decode(masks.resize(rle, 80, 60)), mask.repeat(2, axis=0).repeat(2, axis=1))
    assert masks.resize(rle, 40, 30) is rle
    assert masks.resize(rle, 30, 40)["size"] == [40, 30]


def test_mask_resize_to_any_size_takes_the_pixel_under_each_centre() -> None:
    """Nearest to an uneven size (40 x 30 -> 57 x 23): each new pixel is the old pixel under its
    centre, with no blending of a noisy mask's neighbours (which a threshold would then cut)."""
    mask = (np.random.default_rng(0).random((30, 40)) < 0.5).astype(np.uint8)
    rows = np.floor((np.arange(23) + 0.5) * 30 / 23).astype(int)
    cols = np.floor((np.arange(57) + 0.5) * 40 / 57).astype(int)
    assert np.array_equal(masks.decode(masks.resize(masks.encode(mask), 57, 23)), mask[rows][:, cols])


def test_cuda_devices_are_checked_by_the_name_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device cuda:1` on a one-GPU machine failed at the first tensor with a CUDA traceback, and
    on a machine without a GPU the message named `cuda`, not what was given."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^--device cuda:1: no CUDA GPU is visible here"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("CUDA:0") == torch.device("cuda:0")
    with pytest.raises(
        ConfigError, match=r"^--device cuda:1: there is no GPU 1 here \(1 visible, cuda:0 to cuda:0"
    ):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"^--device cuda:2: there is no GPU 2 here \(2 visible"):
        resolve_device("cuda:2")
    for bad in ("cudax", "cuda:one", "cuda:-1"):
        with pytest.raises(ConfigError, match=rf"^--device '{bad}': use cuda or cuda:N"):
            resolve_device(bad)


def test_devices_and_single_process_distribution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    ctx = DistContext()
    assert ctx.is_main and not ctx.enabled
    assert gather_objects(ctx, 5) == [5]
    assert shard(list(range(5)), DistContext(rank=1, world_size=2)) == [1, 3]


@pytest.mark.parametrize(
    ("device", "backend", "world", "rank", "local_rank"),
    [
        ("cpu", "gloo", 2, 1, 0),  # the second of two machines, one process each
        ("cuda", "nccl", 4, 3, 1),  # the second process of the second machine: its machine's GPU 1
    ],
)
def test_torchrun_context_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, device: str, backend: str, world: int, rank: int, local_rank: int
) -> None:
    """The rank is the process group's, the local rank (and so the GPU) torchrun's LOCAL_RANK."""
    import torch.distributed as dist

    from officescore import distributed

    started: list[str] = []
    gpus: list[int] = []
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: started.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: rank)
    monkeypatch.setattr(dist, "get_world_size", lambda: world)
    monkeypatch.setattr(torch.cuda, "set_device", gpus.append)
    context = DistContext(rank=rank, world_size=world, local_rank=local_rank)
    assert distributed.init(torch.device(device)) == context
    assert started == [backend] and gpus == ([local_rank] if device == "cuda" else [])


def test_rank_0s_object_the_mean_over_ranks_and_the_barrier(monkeypatch: pytest.MonkeyPatch) -> None:
    """broadcast_object hands every rank rank 0's object; all_reduce_mean divides the sum by the ranks;
    a barrier waits for the other ranks, and one process (no process group) waits for none."""
    import torch.distributed as dist

    from officescore.distributed import all_reduce_mean, barrier, broadcast_object

    ctx = DistContext(rank=1, world_size=2)
    sources: list[int] = []

    def broadcast(box: list[Any], src: int) -> None:
        sources.append(src)
        box[0] = "runs/train"  # what rank 0 sent

    def all_reduce(tensor: torch.Tensor, op: Any = None) -> None:  # adds rank 0's box 1.0, loss 3.0
        tensor += torch.tensor([1.0, 3.0], dtype=tensor.dtype)

    monkeypatch.setattr(dist, "broadcast_object_list", broadcast)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    assert broadcast_object(ctx, "runs/train2") == "runs/train" and sources == [0]
    assert all_reduce_mean(ctx, {"loss": 1.0, "box": 3.0}) == {"box": 2.0, "loss": 2.0}
    waited: list[bool] = []
    monkeypatch.setattr(dist, "barrier", lambda: waited.append(True))
    barrier(DistContext())
    assert waited == []
    barrier(ctx)
    assert waited == [True]


def test_a_setting_far_from_every_name_lists_them_and_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no near name the message lists the command's settings (long flag names, without dashes:
    scrape's -n is none), and it names the file read."""
    path = tmp_path / "mine.toml"
    monkeypatch.setenv("OFFICESCORE_CONFIG", str(path))
    with pytest.raises(ConfigError) as info:
        command_defaults(root_context(), {"stats": {"colour": "red"}})
    assert (
        str(info.value)
        == f"{path}: [stats] colour is no setting of `officescore stats` (these are: json, plot)"
    )
    with pytest.raises(ConfigError, match=r"\[scrape\] n is no setting of `officescore scrape`"):
        command_defaults(root_context(), {"scrape": {"n": 5}})
