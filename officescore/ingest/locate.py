"""Find each photo an export names inside the image folder, without ever opening a path as written
when it points outside that folder.

Rules, tried in order (the one that matched is reported by ingest, unless it is the first):
1. as written: `file_name` inside the folder (absolute paths, `..` and links leading out refused);
2. by base name: the one file under the folder with the name's last part (Label Studio writes
   `../<data-dir>/media/upload/<project>/1a2b3c4d-scene.jpg`, CVAT `task/frames/x.jpg`); of
   several, the one alone under the most of the name's trailing folders (another machine's
   `/mnt/share/photos/a/0001.jpg` is `a/0001.jpg`, not `b/0001.jpg`);
3. without Label Studio's upload prefix: `1a2b3c4d-scene.jpg` -> the one file named `scene.jpg`,
   for a folder of the original photos. Label Studio also writes `<8 hex>__` before the names of
   photos its export could not copy (`images/5d41402a__scene.jpg`), and stores an upload under
   Django's safe name (`office 1.jpg` -> `1a2b3c4d-office_1.jpg`: spaces as `_`, other signs
   dropped), so a photo whose safe name is the name without prefix matches too;
4. by base name in another case: the one file named so but for case (a Windows tool's `IMG_1.JPG`
   for `IMG_1.jpg`: Windows and macOS folders do not tell them apart, Linux ones do).
A name that is a URL (`https://host/pics/scene.jpg?w=800`, Label Studio's local files
`/data/local-files/?d=photos/scene%201.jpg`, its storage proxy `?filepath=upload/1/...`) is read
as the path it names, decoded, for rules 1-4.
Names match in either Unicode normal form: macOS and zip tools may store "é" as "e" plus a
combining accent where the export writes one character. Rules 2-4 apply only where unambiguous:
two files under the folder with that name, or two photos of the export that lose their prefixes to
the same name, match nothing (reported, dropped).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from officescore.files import IMAGE_SUFFIXES
from officescore.ingest.checks import path_exists, safe_image_path

AS_WRITTEN = "as written"
BY_BASE_NAME = "by base name"
BY_PATH_END = "by the end of its path"  # several files of that name: the one under its folders
IN_OTHER_CASE = "by its name in another case"
WITHOUT_UPLOAD_PREFIX = "without upload prefix"
# Label Studio stores an upload as the first 8 hex characters of a uuid4, a dash, the original name;
# its export names a photo it could not copy by 8 hex characters of an md5 and two underscores.
UPLOAD_PREFIX = re.compile(r"^(?:[0-9a-f]{8}__(?:[0-9a-f]{8}-)?|[0-9a-f]{8}-)(?P<name>.+)$")
EXPORT_PREFIX = re.compile(r"^[0-9a-f]{8}__(?P<name>.+)$")
# Query keys under which Label Studio's URLs carry a file's path (local files, storage proxy).
PATH_KEYS = ("d", "filepath")


@dataclass(frozen=True)
class Located:
    path: Path | None  # None: refused (escaped) or not found by any rule
    escaped: bool  # the name as written points outside the folder (never opened)
    rule: str = ""  # which rule found `path`; "" when nothing was found
    ambiguous: str = ""  # why rule 2 or 3 could not choose (then path is None)


def base_name(file_name: str) -> str:
    return file_name.replace("\\", "/").rsplit("/", 1)[-1]


def meant_path(file_name: str) -> str:
    """The path a URL-like name stands for (decoded; query and host left out), else the name.

    `https://host/pics/a%201.jpg?w=800` -> `pics/a 1.jpg`; `/data/local-files/?d=photos/a.jpg` ->
    `photos/a.jpg`. Plain names, even with `?` or `%` in them, are returned as written.
    """
    parts = urlsplit(file_name)
    query = parse_qs(parts.query)
    for key in PATH_KEYS:
        if query.get(key) and (parts.path.startswith(("/data/", "/storage-data/")) or parts.scheme):
            return query[key][0].lstrip("/")
    if parts.scheme.lower() in ("http", "https", "s3", "gs", "azure-blob") and parts.netloc:
        return unquote(parts.path).lstrip("/")
    return file_name


def django_safe_name(name: str) -> str:
    """The name Label Studio (Django's `get_valid_filename`) stores an upload under."""
    return re.sub(r"[^-\w.]", "", name.strip().replace(" ", "_"))


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def strip_upload_prefix(name: str) -> str | None:
    match = UPLOAD_PREFIX.match(name)
    return match.group("name") if match else None


class ImageFinder:
    """Locates the export's file names inside `images_dir` by the rules above.

    `file_names` are all the export's names (to see which lose their prefixes to the same name);
    `skip` are folders never searched by name (the data set being written, if it is inside).
    """

    def __init__(self, images_dir: Path, file_names: Iterable[str], skip: Iterable[Path] = ()) -> None:
        self.images_dir = Path(images_dir)
        self.skip = {os.path.realpath(p) for p in skip}
        self._index: dict[str, list[Path]] | None = None  # base name -> files; built on first need
        self._safe_index: dict[str, list[Path]] | None = None  # Django's safe name -> files
        self._case_index: dict[str, list[Path]] | None = None  # casefolded name -> files
        uploads = {base_name(meant_path(n)) for n in file_names if isinstance(n, str)}
        stripped = Counter(original for name in uploads if (original := strip_upload_prefix(name)))
        self._clashes = {name for name, n in stripped.items() if n > 1}
        self.found: set[Path] = set()  # every file `locate` returned: what the export lists

    def locate(self, file_name: str) -> Located:
        located = self._locate(file_name)
        if located.path is not None:
            self.found.add(located.path)
        return located

    def photos(self) -> list[Path]:
        """Every photo under the folder (by suffix; hidden folders and `skip` left out)."""
        paths = [path for paths in self._by_name().values() for path in paths]
        return sorted(path for path in paths if path.suffix.lower() in IMAGE_SUFFIXES)

    def _locate(self, file_name: str) -> Located:
        path = safe_image_path(self.images_dir, file_name)
        meant = meant_path(file_name)
        for name in dict.fromkeys((file_name, meant)):
            for spelling in dict.fromkeys((name, _nfc(name), unicodedata.normalize("NFD", name))):
                written = safe_image_path(self.images_dir, spelling)
                if written is not None and path_exists(written):
                    return Located(written, False, AS_WRITTEN)
        escaped = path is None
        base = base_name(meant)
        found = self._named(base)
        if len(found) == 1:
            return Located(found[0], escaped, BY_BASE_NAME)
        if len(found) > 1:
            closest = self._closest(meant, found)
            if len(closest) == 1:
                return Located(closest[0], escaped, BY_PATH_END)
            what = f"{len(found)} files in the image folder are named {base}"
            return Located(None, escaped, ambiguous=what)
        stored = EXPORT_PREFIX.match(base)  # `<md5>__<8 hex>-name`: the upload as Label Studio stored it
        if stored is not None and len(found := self._named(stored.group("name"))) == 1:
            return Located(found[0], escaped, WITHOUT_UPLOAD_PREFIX)
        original = strip_upload_prefix(base)
        if original is not None:
            if original in self._clashes:
                what = f"several photos of the export are named {original} once the upload prefix is removed"
                return Located(None, escaped, ambiguous=what)
            found = self._named(original) or self._named(unquote(original)) or self._safe_named(original)
            if len(found) == 1:
                return Located(found[0], escaped, WITHOUT_UPLOAD_PREFIX)
            if len(found) > 1:
                what = f"{len(found)} files in the image folder are named {original}"
                return Located(None, escaped, ambiguous=what)
        found = self._named_in_any_case(base)  # a Windows tool's `IMG_1.JPG` for `IMG_1.jpg`
        if len(found) == 1:
            return Located(found[0], escaped, IN_OTHER_CASE)
        if len(found) > 1:
            what = f"{len(found)} files in the image folder are named {base} in some case"
            return Located(None, escaped, ambiguous=what)
        return Located(None if escaped else path, escaped)

    def relative(self, path: Path) -> str:
        """`path` as shown to a person: relative to the image folder."""
        root = os.path.realpath(self.images_dir)
        return Path(os.path.relpath(path, root)).as_posix()

    def _closest(self, file_name: str, candidates: list[Path]) -> list[Path]:
        """Of the files named like `file_name`, those under the most of its trailing folders
        (`/mnt/share/photos/a/0001.jpg`: `a/0001.jpg`, not `b/0001.jpg`)."""
        written = [_nfc(p) for p in file_name.replace("\\", "/").split("/") if p not in ("", ".")]
        root = os.path.realpath(self.images_dir)

        def shared(path: Path) -> int:
            parts = [_nfc(p) for p in Path(os.path.relpath(path, root)).parts]
            n = 0
            while n < min(len(parts), len(written)) and parts[-1 - n] == written[-1 - n]:
                n += 1
            return n

        depth = {path: shared(path) for path in candidates}
        best = max(depth.values())
        return [path for path in candidates if depth[path] == best]

    def _named(self, name: str) -> list[Path]:
        if not name or name in (".", ".."):
            return []
        return self._by_name().get(_nfc(name), [])

    def _named_in_any_case(self, name: str) -> list[Path]:
        """Files whose name is `name` but for case (Windows and macOS folders do not tell them apart)."""
        if self._case_index is None:
            self._case_index = {}
            for file_name, paths in self._by_name().items():
                self._case_index.setdefault(file_name.casefold(), []).extend(paths)
        return self._case_index.get(_nfc(name).casefold(), []) if name not in ("", ".", "..") else []

    def _safe_named(self, name: str) -> list[Path]:
        """Files whose Django-safe name is `name` (Label Studio stored the upload under it)."""
        if self._safe_index is None:
            self._safe_index = {}
            for file_name, paths in self._by_name().items():
                self._safe_index.setdefault(_nfc(django_safe_name(file_name)), []).extend(paths)
        return self._safe_index.get(_nfc(name), [])

    def _by_name(self) -> dict[str, list[Path]]:
        """The folder's files by name, walked once, on first need."""
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def _build_index(self) -> dict[str, list[Path]]:
        """Every file under the folder by name; each checked to stay inside it (links included)."""
        index: dict[str, list[Path]] = {}
        root = self.images_dir
        for folder, dirs, files in os.walk(root, followlinks=False):
            # hidden folders (an ingest's own temporary folder) and the data set are never searched
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".") and os.path.realpath(Path(folder, d)) not in self.skip
            )
            for name in sorted(files):
                relative = os.path.relpath(Path(folder, name), root)
                path = safe_image_path(root, relative)
                if path is not None and path.is_file() and path not in index.get(_nfc(name), []):
                    index.setdefault(_nfc(name), []).append(path)  # two links to one file are one file
        return index
