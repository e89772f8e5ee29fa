"""The office score: a TOML rubric turns detected objects into 0-100 with a breakdown.

Pure and deterministic: the same counts and rubric always give the same `OfficeScore`.

Rubric maths (see `data/rubric.toml` for the default):
- a class earns `points` for its first instance, `points * decay**(n-1)` for the n-th, and only
  the first `cap` instances count (diminishing returns);
- standard classes add up to full marks; the total is `100 * earned / full_marks`;
- bonus classes earn points on top (so they make up for a missing standard item);
- while an essential group (e.g. "a screen": monitor or laptop) has no instance, the total is
  capped at `missing_essential_cap`;
- attribute rules (`[[attributes]]`) award bonus points per detected object of a class whose
  predicted attribute has a given value (e.g. a chair with armrests +3), for at most `cap` objects;
  they add on top like bonus classes, so a model without an attribute head scores as before;
- the total is clipped to 0-100 and rounded to one decimal.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from officescore.attributes import AttributeSchema, same_value
from officescore.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_RUBRIC = "rubric.toml"
_TOP_KEYS = ("name", "decay", "missing_essential_cap", "classes", "essentials", "labels", "attributes")


@dataclass(frozen=True)
class ClassRule:
    name: str
    points: float
    cap: int = 1
    decay: float = 0.5
    bonus: bool = False
    noun: str = ""

    def earned(self, count: int) -> float:
        """Points for `count` instances: geometric diminishing returns up to `cap`."""
        counted = min(max(count, 0), self.cap)
        return sum(self.points * self.decay**i for i in range(counted))

    @property
    def possible(self) -> float:
        return self.earned(self.cap)


@dataclass(frozen=True)
class AttributeRule:
    """`points` for each detected `class_name` whose `attribute` is `value`, up to `cap` objects."""

    class_name: str
    attribute: str
    value: bool | str
    points: float
    cap: int = 1
    noun: str = ""

    @property
    def key(self) -> str:
        """`chair.armrests=yes`: how the breakdown names the rule."""
        value = ("yes" if self.value else "no") if isinstance(self.value, bool) else self.value
        return f"{self.class_name}.{self.attribute}={value}"

    def matches(self, detection: Any) -> bool:
        attributes = _field(detection, "attributes") or {}
        return _field(detection, "class_name", "class") == self.class_name and (
            self.attribute in attributes and same_value(attributes[self.attribute], self.value)
        )

    def earned(self, count: int) -> float:
        return self.points * min(max(count, 0), self.cap)


def _field(item: Any, name: str, alias: str = "") -> Any:
    if isinstance(item, Mapping):
        return item.get(name, item.get(alias) if alias else None)
    return getattr(item, name, None)


@dataclass(frozen=True)
class Essential:
    name: str
    any_of: tuple[str, ...]


@dataclass(frozen=True)
class Rubric:
    classes: dict[str, ClassRule]
    essentials: tuple[Essential, ...] = ()
    labels: tuple[tuple[float, str], ...] = ((0.0, "scored"),)  # (min, label), highest min first
    missing_essential_cap: float = 100.0
    name: str = "custom"
    source: str = ""
    attributes: tuple[AttributeRule, ...] = ()

    @property
    def full_marks(self) -> float:
        """What the standard (non-bonus) classes add up to at their caps."""
        return sum(rule.possible for rule in self.classes.values() if not rule.bonus)

    def label_for(self, total: float) -> str:
        for minimum, label in self.labels:
            if total >= minimum:
                return label
        return self.labels[-1][1]

    @classmethod
    def load(cls, path: Path | str | None = None) -> Rubric:
        """Read a rubric TOML file (None: the packaged default). Invalid -> ConfigError."""
        if path is None:
            text = resources.files("officescore").joinpath("data", DEFAULT_RUBRIC).read_text("utf-8")
            return cls.from_dict(_parse(text, "default rubric"), source="default")
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"--rubric {path}: no such file; pass a TOML rubric (see officescore/data/rubric.toml)"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--rubric {path}: cannot read it as UTF-8 text ({exc})") from exc
        return cls.from_dict(_parse(text, str(path)), source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> Rubric:
        """Validate a parsed rubric; every problem is a one-line ConfigError naming the field."""
        where = source or "rubric"
        # A misspelt key (`missing_essentials_cap`, `[[essential]]`) would silently score by the defaults.
        unknown = set(data) - set(_TOP_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} (use {', '.join(_TOP_KEYS)})"
            )
        decay = _number(data.get("decay", 0.5), f"{where}: decay", 0.0, 1.0)
        table = data.get("classes")
        if not isinstance(table, dict) or not table:
            raise ConfigError(f"{where}: needs a [classes.<name>] table with points for at least one class")
        classes = {name: _class_rule(name, spec, decay, where) for name, spec in table.items()}
        if sum(rule.possible for rule in classes.values() if not rule.bonus) <= 0:
            raise ConfigError(f"{where}: standard (non-bonus) classes must be worth some points in total")
        essentials = tuple(
            _essential(spec, i, classes, where) for i, spec in enumerate(_list(data, "essentials", where))
        )
        labels = tuple(_label(spec, i, where) for i, spec in enumerate(_list(data, "labels", where)))
        labels = tuple(sorted(labels, reverse=True)) or ((0.0, "scored"),)
        cap = _number(data.get("missing_essential_cap", 100), f"{where}: missing_essential_cap", 0.0, 100.0)
        name = data.get("name", Path(source).stem if source else "custom")
        if not isinstance(name, str):
            raise ConfigError(f"{where}: name must be a string")
        attributes = tuple(
            _attribute_rule(spec, i, where) for i, spec in enumerate(_list(data, "attributes", where))
        )
        return cls(classes, essentials, labels, cap, name, source, attributes)


def best_possible(rubric: Rubric, classes: Iterable[str]) -> float:
    """The highest total a model with these classes can reach (every class it knows at its cap;
    attribute rules left out): below 100 when a class worth points is one it cannot detect."""
    known = set(classes)
    return score_office({n: r.cap for n, r in rubric.classes.items() if n in known}, rubric).total


def unmatchable_rules(rubric: Rubric, schema: AttributeSchema, classes: Iterable[str]) -> list[str]:
    """Why each of the rubric's attribute rules can never match what a model with this attribute
    schema and these classes predicts (a misspelt attribute, a value it never gives): such a rule
    silently earns nothing. A model without attributes, or without the rule's class, is not asked."""
    problems = []
    known = set(classes)
    for rule in rubric.attributes:
        if not schema or rule.class_name not in known:
            continue
        spec = schema.get(rule.class_name, rule.attribute)
        if spec is None:
            has = ", ".join(a.name for a in schema.for_class(rule.class_name)) or "none"
            problems.append(
                f"rubric rule {rule.key}: the model has no attribute {rule.attribute!r} "
                f"for {rule.class_name} (it has: {has})"
            )
            continue
        # The test scoring uses (same_value), so the warning and the points never disagree.
        if not any(same_value(rule.value, value) for value in spec.values):
            kind = "yes/no" if spec.kind == "yesno" else f"one of {', '.join(spec.value_names())}"
            problems.append(
                f"rubric rule {rule.key}: {rule.class_name}.{rule.attribute}: "
                f"{rule.value!r:.30} is not {kind}"
            )
    return problems


@dataclass(frozen=True)
class ClassScore:
    class_name: str
    count: int
    counted: int
    earned: float
    possible: float
    bonus: bool
    essential: bool


@dataclass(frozen=True)
class AttributeScore:
    rule: str  # chair.armrests=yes
    count: int
    earned: float
    possible: float


@dataclass(frozen=True)
class Suggestion:
    class_name: str
    gain: float
    text: str


@dataclass
class OfficeScore:
    total: float
    label: str
    breakdown: list[ClassScore]
    suggestions: list[Suggestion]
    missing_essentials: list[str] = field(default_factory=list)
    unscored: dict[str, int] = field(default_factory=dict)  # detected classes the rubric ignores
    rubric: str = "default"
    attributes: list[AttributeScore] = field(default_factory=list)  # the rubric's [[attributes]] rules

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_classes(detections_or_counts: Mapping[str, int] | Iterable[Any]) -> dict[str, int]:
    """Counts per class from a {class: count} mapping, Detection records, or dicts with 'class'."""
    if isinstance(detections_or_counts, Mapping):
        for name, count in detections_or_counts.items():
            if int(count) < 0:
                raise ValueError("class counts cannot be negative")
            if count != int(count):  # int() would quietly turn 1.7 chairs into 1
                raise ValueError(f"class counts must be whole numbers: {name} is {count}")
        return {str(k): int(v) for k, v in detections_or_counts.items()}
    counter: Counter[str] = Counter()
    for item in detections_or_counts:
        if isinstance(item, str):
            counter[item] += 1
        elif isinstance(item, Mapping):
            counter[str(item.get("class_name", item.get("class")))] += 1
        else:
            counter[str(item.class_name)] += 1
    return dict(counter)


def score_office(
    detections_or_counts: Mapping[str, int] | Iterable[Any], rubric: Rubric | None = None
) -> OfficeScore:
    """Score one photo's detections (or class counts) against a rubric (default: the packaged one)."""
    rubric = rubric or Rubric.load()
    items = detections_or_counts if isinstance(detections_or_counts, Mapping) else list(detections_or_counts)
    counts = count_classes(items)
    # Attribute rules need the detections themselves: class counts alone earn none of their points.
    matched = [
        0 if isinstance(items, Mapping) else sum(r.matches(d) for d in items) for r in rubric.attributes
    ]
    extra = sum(rule.earned(n) for rule, n in zip(rubric.attributes, matched, strict=True))
    total = _total(counts, rubric, extra)
    essential_classes = {c for e in rubric.essentials for c in e.any_of}
    breakdown = [
        ClassScore(
            class_name=name,
            count=counts.get(name, 0),
            counted=min(counts.get(name, 0), rule.cap),
            earned=round(rule.earned(counts.get(name, 0)), 2),
            possible=round(rule.possible, 2),
            bonus=rule.bonus,
            essential=name in essential_classes,
        )
        for name, rule in rubric.classes.items()
    ]
    return OfficeScore(
        total=total,
        label=rubric.label_for(total),
        breakdown=breakdown,
        suggestions=_suggestions(counts, rubric, total, extra),
        missing_essentials=_missing_essentials(counts, rubric),
        unscored={k: v for k, v in sorted(counts.items()) if k not in rubric.classes and v > 0},
        rubric=rubric.name,
        attributes=[
            AttributeScore(rule.key, n, round(rule.earned(n), 2), round(rule.earned(rule.cap), 2))
            for rule, n in zip(rubric.attributes, matched, strict=True)
        ],
    )


def row_name(row: ClassScore, missing: bool = False) -> str:
    """A breakdown row's class as `score` and the page name it: `desk (essential)`, `lamp (bonus)`;
    `missing`: an essential whose group nothing was found for, `monitor (essential, missing)`."""
    if row.bonus:
        return f"{row.class_name} (bonus)"
    if row.essential:
        return f"{row.class_name} (essential, missing)" if missing else f"{row.class_name} (essential)"
    return row.class_name


def missing_essential_classes(office: OfficeScore, rubric: Rubric) -> set[str]:
    """The classes of the essential groups `office` lacks (a screen: monitor and laptop)."""
    return {c for e in rubric.essentials if e.name in office.missing_essentials for c in e.any_of}


def how_points_make_the_total(office: OfficeScore) -> str:
    """Why the points column does not add up to the score, when it does not: a rubric's full marks
    other than 100, the missing-essential cap, the clip at 100 ("" when it adds up)."""
    points = sum(row.earned for row in office.breakdown) + sum(rule.earned for rule in office.attributes)
    full = sum(row.possible for row in office.breakdown if not row.bonus)
    scaled = round(100.0 * points / full, 1)
    if round(points, 1) == office.total:
        return ""
    why = f"{points:g} points of {full:g} full marks = {scaled:g}/100"
    if scaled > office.total and office.missing_essentials:
        why += f", capped at {office.total:g} while an essential is missing"
    elif scaled > office.total:
        why += ", clipped to 100"
    return why


def _total(counts: Mapping[str, int], rubric: Rubric, extra: float = 0.0) -> float:
    """`extra`: bonus points earned by attribute rules."""
    standard = sum(r.earned(counts.get(n, 0)) for n, r in rubric.classes.items() if not r.bonus)
    bonus = extra + sum(r.earned(counts.get(n, 0)) for n, r in rubric.classes.items() if r.bonus)
    total = 100.0 * (standard + bonus) / rubric.full_marks
    if _unmet(counts, rubric):
        total = min(total, rubric.missing_essential_cap)
    return round(min(max(total, 0.0), 100.0), 1)


def _unmet(counts: Mapping[str, int], rubric: Rubric) -> list[Essential]:
    return [e for e in rubric.essentials if not any(counts.get(c, 0) > 0 for c in e.any_of)]


def _missing_essentials(counts: Mapping[str, int], rubric: Rubric) -> list[str]:
    return [e.name for e in _unmet(counts, rubric)]


def _suggestions(
    counts: Mapping[str, int], rubric: Rubric, total: float, extra: float = 0.0
) -> list[Suggestion]:
    """What one more instance of each class would add, best first (ties: rubric order)."""
    found = []
    for order, (name, rule) in enumerate(rubric.classes.items()):
        count = counts.get(name, 0)
        if count >= rule.cap:
            continue
        gain = round(_total({**counts, name: count + 1}, rubric, extra) - total, 1)
        if gain <= 0:
            continue
        noun = rule.noun or name
        thing = f"another {noun}" if count else f"{_article(noun)} {noun}"
        found.append((-gain, order, Suggestion(name, gain, f"add {thing}: +{gain:g}")))
    missing = _unmet(counts, rubric)
    if len(missing) > 1:
        # While two essentials are missing neither alone lifts the cap (at the cap each gains 0 and
        # nothing was suggested): suggest them together, each by its most valuable class.
        picks = list(dict.fromkeys(max(e.any_of, key=lambda c: rubric.classes[c].points) for e in missing))
        more = {**counts, **{c: counts.get(c, 0) + 1 for c in picks}}
        gain = round(_total(more, rubric, extra) - total, 1)
        if gain > 0:
            things = [f"{_article(n)} {n}" for n in (rubric.classes[c].noun or c for c in picks)]
            text = f"add {', '.join(things[:-1])} and {things[-1]}: +{gain:g}"
            order = list(rubric.classes).index(picks[0])
            found.append((-gain, order, Suggestion(picks[0], gain, text)))
    return [s for _, _, s in sorted(found, key=lambda t: (t[0], t[1]))]


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


# --- validation helpers -------------------------------------------------------------------------


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from exc


def _number(value: Any, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{what} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of tables ([[{key}]])")
    return value


def _class_rule(name: str, spec: Any, decay: float, where: str) -> ClassRule:
    what = f"{where}: classes.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{what} must be a table with at least `points`")
    unknown = set(spec) - {"points", "cap", "decay", "bonus", "noun"}
    if unknown:
        raise ConfigError(
            f"{what}: unknown key(s) {', '.join(sorted(unknown))} (use points, cap, decay, bonus, noun)"
        )
    if "points" not in spec:
        raise ConfigError(f"{what}: missing `points`")
    cap = spec.get("cap", 1)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"{what}.cap must be a whole number >= 1, got {cap!r}")
    bonus = spec.get("bonus", False)
    if not isinstance(bonus, bool):
        raise ConfigError(f"{what}.bonus must be true or false, got {bonus!r}")
    noun = spec.get("noun", name)
    if not isinstance(noun, str) or not noun.strip():
        raise ConfigError(f"{what}.noun must be a non-empty string")
    return ClassRule(
        name=name,
        points=_number(spec["points"], f"{what}.points", 0.0, 1000.0),
        cap=cap,
        decay=_number(spec.get("decay", decay), f"{what}.decay", 0.0, 1.0),
        bonus=bonus,
        noun=noun,
    )


def _attribute_rule(spec: dict[str, Any], index: int, where: str) -> AttributeRule:
    what = f"{where}: attributes[{index}]"
    unknown = set(spec) - {"class", "attribute", "value", "points", "cap", "noun"}
    if unknown:
        raise ConfigError(
            f"{what}: unknown key(s) {', '.join(sorted(unknown))} "
            "(use class, attribute, value, points, cap, noun)"
        )
    for key in ("class", "attribute"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise ConfigError(f'{what}.{key} must be a name (e.g. class = "chair", attribute = "armrests")')
    value = spec.get("value")
    if not isinstance(value, (bool, str)) or value == "":
        raise ConfigError(
            f"{what}.value must be true/false (a yes/no attribute) or a value's name, got {value!r}"
        )
    cap = spec.get("cap", 1)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"{what}.cap must be a whole number >= 1, got {cap!r}")
    return AttributeRule(
        class_name=spec["class"],
        attribute=spec["attribute"],
        value=value,
        points=_number(spec.get("points"), f"{what}.points", 0.0, 1000.0),
        cap=cap,
        noun=str(spec.get("noun", "")),
    )


def _essential(spec: dict[str, Any], index: int, classes: Mapping[str, ClassRule], where: str) -> Essential:
    what = f"{where}: essentials[{index}]"
    any_of = spec.get("any_of")
    if not isinstance(any_of, list) or not any_of or not all(isinstance(c, str) for c in any_of):
        raise ConfigError(f"{what}.any_of must be a non-empty list of class names")
    unknown = [c for c in any_of if c not in classes]
    if unknown:
        raise ConfigError(f"{what}: {', '.join(unknown)} not in [classes]; add it or fix the name")
    name = spec.get("name", " or ".join(any_of))
    if not isinstance(name, str):
        raise ConfigError(f"{what}.name must be a string")
    return Essential(name, tuple(any_of))


def _label(spec: dict[str, Any], index: int, where: str) -> tuple[float, str]:
    what = f"{where}: labels[{index}]"
    label = spec.get("label")
    if not isinstance(label, str) or not label:
        raise ConfigError(f"{what}.label must be a non-empty string")
    return (_number(spec.get("min"), f"{what}.min", 0.0, 100.0), label)
