"""Declared labelling conventions: how a team outlines a class. `CLASS=whole` is the object with all
its parts (the plant with its pot, the desk with its legs and drawers: `sample`'s default), and
`CLASS=part` its main part only (the leaves, the desk top: `sample --plant-mask leaves`,
`--desk-mask top`); a note may follow a colon (`plant=whole: include the pot`).

`ingest --convention` records them in dataset.json (`conventions`), and a later ingest into the same
folder carries them over unless given again (`CLASS=none` drops one); `audit --convention` overrides
them for one run; `label push --convention` writes them into the project's labelling instructions.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from officescore.errors import ConfigError

WHOLE, PART, NONE = "whole", "part", "none"
MEANINGS = {WHOLE: "the object with all its parts", PART: "the main part only"}


@dataclass(frozen=True)
class Declared:
    convention: str  # WHOLE or PART
    note: str = ""

    def words(self) -> str:
        """`whole (the object with all its parts): include the pot`"""
        return f"{self.convention} ({MEANINGS[self.convention]})" + (f": {self.note}" if self.note else "")

    def to_dict(self) -> dict[str, str]:
        return {"convention": self.convention, "note": self.note}


def _valid_values() -> str:
    return ", ".join(f"{k} ({v})" for k, v in MEANINGS.items()) + f" or {NONE} (no declaration)"


def parse_conventions(texts: Iterable[str], flag: str = "--convention") -> dict[str, Declared | None]:
    """`CLASS=whole|part|none[: note]` each -> {class: Declared, or None for `none`}; the last wins."""
    out: dict[str, Declared | None] = {}
    for text in texts:
        name, equals, rest = text.partition("=")
        value, _, note = rest.partition(":")
        name, value = name.strip(), value.strip().lower()
        if not equals or not name:
            raise ConfigError(f"{flag} {text!r}: write CLASS=whole or CLASS=part (e.g. plant=whole)")
        if value != NONE and value not in MEANINGS:
            raise ConfigError(f"{flag} {text!r}: the convention is one of {_valid_values()}")
        out[name] = None if value == NONE else Declared(value, note.strip())
    return out


def check_convention_classes(
    given: Mapping[str, Any], classes: Sequence[str], flag: str = "--convention"
) -> None:
    """A declaration for a class the data set (project) does not label is a typo: refused."""
    unknown = [name for name in given if name not in classes]
    if unknown:
        raise ConfigError(
            f"{flag} {unknown[0]}=...: no class {unknown[0]!r}; the classes are {', '.join(classes)}"
        )


def read_conventions(meta: Mapping[str, Any] | None) -> dict[str, Declared]:
    """The declarations a dataset.json records ({} when none, or written before they existed)."""
    recorded = (meta or {}).get("conventions")
    if not isinstance(recorded, dict):
        return {}
    out = {}
    for name, entry in recorded.items():
        if isinstance(entry, dict) and entry.get("convention") in MEANINGS:
            out[str(name)] = Declared(entry["convention"], str(entry.get("note") or ""))
    return out


def merged(
    earlier: Mapping[str, Declared | None], given: Mapping[str, Declared | None], classes: Sequence[str]
) -> dict[str, Declared]:
    """`earlier` with `given` over it (None drops a class's declaration), for `classes` only."""
    both: dict[str, Declared | None] = {**earlier, **given}
    out = {}
    for name in classes:
        declared = both.get(name)
        if declared is not None:
            out[name] = declared
    return out


def as_json(declared: Mapping[str, Declared]) -> dict[str, dict[str, str]]:
    return {name: d.to_dict() for name, d in declared.items()}


# Label Studio keeps only safe HTML in a project's instructions (no comments): the block is a div of
# its own class, each declaration also in its item's title, so that a later push can read it back.
BLOCK_CLASS, ITEM_CLASS = "officescore-conventions", "officescore-convention"
_BLOCK = re.compile(rf'<div class="{BLOCK_CLASS}">.*?</div>', re.DOTALL)
_ITEM = re.compile(rf'<li class="{ITEM_CLASS}" title="([^"]*)"')


def with_conventions(
    instructions: str, given: Mapping[str, Declared | None], classes: Sequence[str]
) -> tuple[str, dict[str, Declared]]:
    """Labelling instructions (HTML) holding the declarations an earlier push wrote there with
    `given` over them (None drops one), the rest of the text as it was; and those declarations."""
    block = _BLOCK.search(instructions)
    earlier = parse_conventions(html.unescape(t) for t in _ITEM.findall(block.group(0) if block else ""))
    declared = merged(earlier, given, classes)
    items = "".join(
        f'<li class="{ITEM_CLASS}" title="{html.escape(declaration(name, d))}">'
        f"<b>{html.escape(name)}</b>: {html.escape(d.words())}</li>"
        for name, d in declared.items()
    )
    ours = f'<div class="{BLOCK_CLASS}"><h4>Labelling conventions</h4><ul>{items}</ul></div>'
    rest = _BLOCK.sub("", instructions).rstrip()
    return "\n".join(part for part in (rest, ours if declared else "") if part), declared


def declaration(name: str, declared: Declared) -> str:
    """`plant=whole: include the pot`, as --convention takes it."""
    return f"{name}={declared.convention}" + (f": {declared.note}" if declared.note else "")
