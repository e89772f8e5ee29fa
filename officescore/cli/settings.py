"""officescore.toml read against the command line it sets defaults for.

Click looks a table's keys up by parameter name and ignores the rest, so a misspelt key (`epoch = 12`
under [train]), a misspelt table ([trian]) or an option whose parameter is named otherwise than its
flag (`near-dup-threshold`, parameter `near_dup`) silently left the default in place. Here every
table must name a command, every key one of its options (by its flag name, without the dashes), or
a secret read outside Click; keys come back renamed to their parameters for Click's default_map.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, NoReturn

from officescore.config import SECRETS, config_path, provider_quotas
from officescore.errors import ConfigError


def command_defaults(ctx: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Click's default_map for `config` under the group of `ctx` (the root command; see the module
    doc); a table or key that sets nothing is a ConfigError naming it and the nearest name."""
    root = ctx.command
    defaults: dict[str, Any] = {}
    for table, values in config.items():
        command = root.get_command(ctx, table)
        if command is None:
            _refuse(f"[{table}] is no command of officescore", table, root.list_commands(ctx))
        elif _is_group(command):  # [label]: shared keys, and a table per subcommand
            defaults[table] = _group_defaults(command, ctx, table, values)
        else:
            if table == "scrape":  # [scrape.<provider>] quotas are read by the scrape itself
                provider_quotas(config)
                values = {key: value for key, value in values.items() if not isinstance(value, dict)}
            defaults[table] = _renamed(command, table, values, SECRETS.get(table, {}))
    return defaults


def _group_defaults(group: Any, ctx: Any, table: str, values: dict[str, Any]) -> dict[str, Any]:
    """A group's table: plain keys are shared by its subcommands (each takes those it has; a key must
    be an option of one of them), [table.sub] tables set one subcommand's."""
    subcommands = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    secrets = SECRETS.get(table, {})
    shared = {key: value for key, value in values.items() if not isinstance(value, dict)}
    for name, value in values.items():
        if isinstance(value, dict) and name not in subcommands:
            _refuse(f"[{table}.{name}] is no command of `officescore {table}`", name, list(subcommands))
    for key in shared:
        if _name(key) not in secrets and not any(_parameter(c, key) for c in subcommands.values()):
            options = sorted({o for c in subcommands.values() for o in _options(c)})
            _refuse(
                f"[{table}] {key} is no setting of any `officescore {table}` command",
                key,
                [*options, *_written(secrets)],
            )
    defaults = {}
    for name, command in subcommands.items():
        usable = {key: value for key, value in shared.items() if _parameter(command, key)}
        own = values.get(name) if isinstance(values.get(name), dict) else {}
        misplaced = [key for key in own if _name(key) in secrets]
        if misplaced:  # read only from [table]: here it would be skipped, and the key said missing
            raise ConfigError(
                f"[{table}.{name}] {misplaced[0]}: a secret is read only under [{table}]; move it there"
            )
        defaults[name] = _renamed(command, f"{table}.{name}", {**usable, **own}, secrets)
    return defaults


def _renamed(command: Any, table: str, values: dict[str, Any], secrets: Iterable[str]) -> dict[str, Any]:
    """`values` keyed by the parameters their option names set; secrets left out (read elsewhere)."""
    renamed = {}
    for key, value in values.items():
        if _name(key) in secrets:
            continue
        parameter = _parameter(command, key)
        if parameter is None:
            _refuse(
                f"[{table}] {key} is no setting of `officescore {table.replace('.', ' ')}`",
                key,
                [*_options(command), *_written(secrets)],
            )
        if _repeatable(command, parameter) and not isinstance(value, list):
            value = [value]  # `iou = 0.6` for a repeatable `--iou`: one value, as on the command line
        renamed[parameter] = value
    return renamed


def _written(secrets: Iterable[str]) -> list[str]:
    """The secrets' keys as the file writes them: a misspelt key is offered its nearest one too
    (`unsplash-key` -> unsplash-access-key)."""
    return sorted(secret.replace("_", "-") for secret in secrets)


def _repeatable(command: Any, parameter: str) -> bool:
    return any(p.name == parameter and getattr(p, "multiple", False) for p in command.params)


def _parameter(command: Any, key: str) -> str | None:
    """The name of the option `key` sets (its flag name or parameter name, dashes or underscores)."""
    wanted = _name(key)
    for param in command.params:
        if not _is_option(param) or param.name is None:
            continue
        flags = {_name(flag.lstrip("-")) for flag in param.opts if flag.startswith("--")}
        if wanted == param.name or wanted in flags:
            return param.name
    return None


def _options(command: Any) -> list[str]:
    """The settable option names of a command, as they are written in the file."""
    names = set()
    for param in command.params:
        if _is_option(param):
            names |= {flag[2:] for flag in param.opts if flag.startswith("--")}
    return sorted(names)


# Duck-typed: Typer 0.29 vendors its own Click, whose classes are not the `click` package's.
def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def _is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", None) == "option"


def _name(key: str) -> str:
    return key.replace("-", "_")


def _refuse(what: str, key: str, choices: list[str]) -> NoReturn:
    close = difflib.get_close_matches(key.replace("_", "-"), choices, n=1)
    hint = f"did you mean {close[0]}?" if close else f"these are: {', '.join(choices)}"
    raise ConfigError(f"{config_path()}: {what} ({hint})")
