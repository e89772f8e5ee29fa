"""Per-object attributes: the schema (which class has which attribute, its values and default).

Foundation level (no torch). The schema is a TOML file (`data/attributes.toml` by default, form
documented there); it travels as plain values in `dataset.json` and in checkpoints (`to_dict` /
`from_dict`), so every stage after ingest uses the schema the data set was ingested with.

Values: a "yesno" attribute holds `True`/`False` (CVAT writes checkboxes as JSON booleans); a
"choice" attribute one of its listed strings. `parse` accepts what labelling tools write
("yes"/"no", "true"/"false", "1"/"0" for yes/no; the exact value text for choices).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from officescore.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Value = bool | str
KINDS = ("yesno", "choice")
# Keys CVAT writes on every annotation that are not attributes of the object's class.
TOOL_KEYS = frozenset({"occluded", "rotation", "track_id", "keyframe", "z_order", "outside"})
_YES = {"yes", "true", "1", "y"}
_NO = {"no", "false", "0", "n"}


@dataclass(frozen=True)
class Attribute:
    class_name: str
    name: str
    kind: str  # "yesno" or "choice"
    values: tuple[Value, ...]  # yesno: (False, True); the model's class index is the position here
    default: Value
    description: str = ""

    def parse(self, raw: Any) -> Value:
        """The schema value for what a tool wrote, or ValueError naming the accepted values."""
        if self.kind == "yesno":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _YES:
                return True
            if text in _NO:
                return False
            raise ValueError(f"{raw!r:.30} is not yes/no")
        if isinstance(raw, str) and raw.strip() in self.values:
            return raw.strip()
        if isinstance(raw, str):  # "Floor" from a tool whose choices were typed capitalised
            same = [v for v in self.values if str(v).casefold() == raw.strip().casefold()]
            if len(same) == 1:
                return same[0]
        raise ValueError(f"{raw!r:.30} is not one of {', '.join(map(str, self.values))}")

    def index(self, value: Value) -> int:
        return self.values.index(value)

    def value_names(self) -> list[str]:
        """Values as text (yes/no for yesno): keys of counts, Label Studio choices, confusion rows."""
        return [value_name(v) for v in self.values]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "default": self.default}
        if self.kind == "choice":
            out["values"] = list(self.values)
        if self.description:
            out["description"] = self.description
        return out


def same_value(a: Any, b: Any) -> bool:
    """One attribute value however it was written: True, "yes", "True", "1" (and the no's) are one
    yes/no value, and a choice is its name in any case (data sets store JSON booleans, tools and
    hand-written rubrics write text)."""

    def normal(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip().casefold()
        return True if text in _YES else False if text in _NO else text

    return normal(a) == normal(b)


def value_name(value: Value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@dataclass(frozen=True)
class AttributeSchema:
    attributes: tuple[Attribute, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.attributes)

    def for_class(self, class_name: str) -> list[Attribute]:
        return [a for a in self.attributes if a.class_name == class_name]

    def get(self, class_name: str, name: str) -> Attribute | None:
        for a in self.attributes:
            if a.class_name == class_name and a.name == name:
                return a
        return None

    def restricted(self, classes: list[str] | tuple[str, ...]) -> AttributeSchema:
        """Only the attributes of `classes` (a data set keeps those of the classes it keeps)."""
        return AttributeSchema(tuple(a for a in self.attributes if a.class_name in classes))

    def classes_outside(self, classes: list[str] | tuple[str, ...]) -> list[str]:
        """Classes with attributes here that `classes` lacks, in file order (a misspelt [chiar.x])."""
        return list(dict.fromkeys(a.class_name for a in self.attributes if a.class_name not in classes))

    def to_dict(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for a in self.attributes:
            out.setdefault(a.class_name, {})[a.name] = a.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "attribute schema") -> AttributeSchema:
        """Parse `{class: {attribute: {kind, values, default}}}` (TOML tables or JSON), checking it."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected tables [<class>.<attribute>], got {type(data).__name__}")
        found: list[Attribute] = []
        for class_name, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: [{class_name}] must hold tables [{class_name}.<attribute>]")
            for name, spec in table.items():
                found.append(_attribute(str(class_name), str(name), spec, where))
        return cls(tuple(found))


def _attribute(class_name: str, name: str, spec: Any, where: str) -> Attribute:
    label = f"{where}: [{class_name}.{name}]"
    if not isinstance(spec, dict):
        raise ConfigError(f"{label} must be a table with kind and default")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ConfigError(f'{label}: kind must be "yesno" or "choice", got {kind!r}')
    if name in TOOL_KEYS:
        raise ConfigError(f"{label}: {name!r} is a name CVAT uses for itself; choose another name")
    unknown = set(spec) - {"kind", "values", "default", "description"}
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}")
    if kind == "yesno":
        values: tuple[Value, ...] = (False, True)
        if "values" in spec:
            raise ConfigError(f"{label}: a yesno attribute has no values list (it is true/false)")
    else:
        raw = spec.get("values")
        if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(v, str) and v for v in raw):
            raise ConfigError(f"{label}: a choice attribute needs values = [at least two names]")
        if len(set(raw)) != len(raw):
            raise ConfigError(f"{label}: values repeat")
        values = tuple(raw)
    attribute = Attribute(class_name, name, kind, values, values[0], str(spec.get("description", "")))
    if "default" not in spec:
        raise ConfigError(f"{label}: needs a default (one of its values)")
    try:
        default = attribute.parse(spec["default"])
    except ValueError as exc:
        raise ConfigError(f"{label}: default {exc}") from exc
    return Attribute(class_name, name, kind, values, default, attribute.description)


def default_schema_path() -> Path:
    return Path(str(resources.files("officescore") / "data" / "attributes.toml"))


def load_schema(path: Path | None = None) -> AttributeSchema:
    """The schema in `path` (default: the package's data/attributes.toml); ConfigError when bad."""
    path = Path(path) if path is not None else default_schema_path()
    if path.is_dir():
        raise ConfigError(
            f"--attributes {path}: is a folder; give the TOML file of [<class>.<attribute>] tables"
        )
    if not path.is_file():
        raise ConfigError(f"--attributes {path}: no such file (a TOML file of [<class>.<attribute>] tables)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--attributes {path}: not valid TOML ({exc})") from exc
    return AttributeSchema.from_dict(data, str(path))
