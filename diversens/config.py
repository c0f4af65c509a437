"""Typed config plumbing: dataclasses with defaults and help, filled from YAML then CLI options.

Each stage owns a dataclass (fields carry `metadata={"help": ...}`, checks live in `__post_init__`);
this module only turns YAML mappings and `--section.field value` options into those dataclasses.
Configs are data: YAML is read with a `SafeLoader` (duplicate keys refused), never executed.

Field metadata this module reads besides "help" and "short":
- "range": the interval every number of the field (of a list, every item; of a dict, every
  value) must lie in, as "[1, 1000000]", "(0, 1]" or "[0, inf)"; `ranges.check_ranges` (called
  first in each config's `__post_init__`) enforces it, and the help shows it. Every int or float
  field has one (tests/test_config.py walks them all).
- "path": a local path (or URI): `~` is expanded once, where the value is parsed, so the
  checks and the writes see the same path.

A command's `--help` shows the options of diversens.commands.options.COMMON, by section, and
`--help-all` every option (`add_help_all`); what help shows never changes what is parsed.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import types
import typing
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from diversens.errors import UserError, shown
from diversens.ranges import describe_range

T = TypeVar("T")
# A comma starts the next key=value entry of a CLI dict only where a key= follows, so a value
# (a follow-up message) may hold commas.
_DICT_ENTRY = re.compile(r",(?=\s*[\w.-]+=)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)  # s3://, gs://, file://, ...


class ConfigError(UserError):
    """A bad config value or key; `option` is its dotted path, so the caller can say whether it
    came from the config file or from the command line."""

    def __init__(self, option: str, problem: str):
        super().__init__(f"option {option}: {problem}")
        self.option, self.problem = option, problem


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _scalar_types(tp: Any) -> tuple[type, ...]:
    """The concrete types a value may take: `int | None` -> (int, NoneType)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(tp))
    return (tp,)


def _untyped(value: Any) -> Any:
    """A value passed through to a library as is (`dict[str, Any]`): a string that reads as a
    number or true/false becomes one (the command line gives only strings, and YAML reads 1e-5
    as a string); anything else stays as it is."""
    if not isinstance(value, str):
        return value
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for number in (int, float):
        try:
            parsed = number(value)
        except ValueError:
            continue
        return parsed if math.isfinite(parsed) else value
    return value


def expand_path(value: str) -> str:
    """A path option as every later step uses it: `~` expanded (a URI as it is). Relative paths
    stay relative to the driver's working directory; what Ray workers get is made absolute
    where it is handed to them."""
    return value if not value or _SCHEME.match(value) else os.path.expanduser(value)


def _flow(text: str, where: str) -> Any:
    """A list or mapping option given in JSON/YAML flow syntax on the command line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "not valid JSON/YAML"
        raise ConfigError(where, f"{problem} in {shown(text)}") from None


def _coerce(value: Any, tp: Any, where: str, path: bool = False) -> Any:
    """Check/convert one YAML or CLI value to the field's type; a mismatch names the option.
    `path`: the value is a path (`~` expanded)."""
    if tp is Any:
        return _untyped(value)
    allowed = _scalar_types(tp)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        origin = typing.get_origin(t)
        if origin in (list, tuple):
            if isinstance(value, str) and value.lstrip().startswith("["):
                value = _flow(value, where)  # ["a", "b,c"]: items that hold a comma
            elif isinstance(value, str):
                value = [v for v in value.split(",") if v]
            if isinstance(value, (list, tuple)):
                (item_tp, *_) = typing.get_args(t) or (str,)
                return [_coerce(v, item_tp, where, path) for v in value]
            continue
        if origin is dict:
            if isinstance(value, str) and value.lstrip().startswith("{"):
                value = _flow(value, where)  # {a: 1, b: "x,y=z"}
            elif isinstance(value, str):  # CLI form: key=value,key=value
                pairs = [item.partition("=") for item in _DICT_ENTRY.split(value) if item]
                if not all(sep for _, sep, _ in pairs):
                    continue
                value = {}
                for k, _, v in pairs:
                    if k in value:
                        twice = f"({shown(value[k])}, {shown(v)})"
                        raise ConfigError(where, f"key {shown(k)} given twice {twice}")
                    value[k] = v
            if isinstance(value, dict):
                _, val_tp = typing.get_args(t) or (str, str)
                return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
            continue
        if t is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            continue
        if t is int and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                return int(value)
            except ValueError:
                continue
        if t is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                number = float(value)
            except ValueError:
                continue
            if not math.isfinite(number):  # no option means anything with nan or inf
                raise ConfigError(where, f"expected a finite number, got {shown(value)}")
            return number
        if t is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value) if not path else expand_path(str(value))
        if typing.get_origin(t) is typing.Literal and value in typing.get_args(t):
            return value
    names = "/".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(where, f"expected {names}, got {shown(value)}")


def from_dict(
    cls: type[T], data: dict[str, Any] | None, prefix: str = "", base: T | None = None
) -> T:
    """Build a (nested) config dataclass from a mapping; unknown keys are errors, not ignored.

    With `base`, the mapping overrides that instance's values instead of the class defaults.
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _unknown_key(prefix, unknown[0], fields)
    kwargs = {}
    for name, value in data.items():
        tp = _field_type(cls, fields[name])
        where = f"{prefix}{name}"
        if _is_dataclass_type(tp):
            value = {} if value is None else value  # `pairs:` with nothing under it: defaults
            if not isinstance(value, dict):
                raise ConfigError(where, f"expected a mapping, got {shown(value)}")
            kwargs[name] = from_dict(tp, value, f"{where}.", _default_instance(fields[name], tp))
        else:
            kwargs[name] = _coerce(value, tp, where, bool(fields[name].metadata.get("path")))
    try:
        return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ checks
        option = _option_named_in(str(e), fields, prefix, cls)
        problem = str(e).removeprefix(f"{option.removeprefix(prefix)}: ")  # said once is enough
        raise ConfigError(option, problem) from None


def from_summary(cls: type[T], summary: dict[str, Any], path: str | Path) -> T:
    """The config a run stored in its summary's `config` entry (`io.read_summary`), as `cls`."""
    stored = summary.get("config")
    if not isinstance(stored, dict):
        raise UserError(f"{path}: entry 'config' is not a mapping")
    try:
        return from_dict(cls, stored)
    except ConfigError as e:
        raise UserError(f"{path}: field config.{e.option}: {e.problem}") from None


def _unknown_key(prefix: str, name: str, fields: dict) -> ConfigError:
    return ConfigError(f"{prefix}{name}", f"unknown (known here: {', '.join(fields)})")


def check_seeds(option: str, seeds: list[int]) -> None:
    """A list of seeds: at least one, none twice (each names a run of its own)."""
    if not seeds or len(set(seeds)) < len(seeds):
        raise ValueError(f"{option} must be one or more distinct seeds, got {seeds}")


def check_names(option: str, given: Iterable[str], known: Collection[str], what: str) -> None:
    """Every key of a pass-through option (`option`: its dotted name) is one of a library's
    `known` names; the first that is not fails as one line, with the closest known ones."""
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{option}.{name}", f"not {what}{hint}")


def _option_named_in(message: str, fields: dict, prefix: str, cls: type) -> str:
    """The dotted option a __post_init__ message is about: the first field it names, with the
    nested path it gives (`sampling.num_samples_per_prompt`); a message naming none is about
    the section as a whole."""
    found = [
        (m.start(), m.group(0))
        for name in fields
        if (m := re.search(rf"(?<![\w.]){re.escape(name)}(\.\w+)*(?![\w])", message))
    ]
    if found:
        return prefix + min(found)[1]
    return prefix.rstrip(".") or cls.__name__


def _default_instance(f: dataclasses.Field, tp: type) -> Any:
    """A parent's customised default of a nested config (`default_factory=lambda: Cfg(x=1)`), which
    a partial YAML section should refine, not replace; None for a plain `default_factory=Cfg`."""
    factory = f.default_factory
    return None if factory is dataclasses.MISSING or factory is tp else factory()


# Values that aliases may add to a YAML document (each use of an alias repeats the value it
# names): far more than any config needs, far fewer than a "billion laughs" (nine aliases of
# nine, nested nine deep) expands to.
MAX_YAML_VALUES = 100_000


class _Refused(yaml.constructor.ConstructorError):
    """YAML that parses but that a config may not hold; its `problem` is the message."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML would keep the last) and a
    document whose aliases add more than MAX_YAML_VALUES values or that holds itself."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _Refused(None, None, f"duplicate key {shown(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def compose_document(self):
        node = super().compose_document()
        _check_expansion(node)
        return node


def _check_expansion(root: yaml.Node) -> None:
    """Count the values of `root` as a reader of the constructed data walks them (an alias once
    per use), without walking them: a node's count is computed once, from its children's. What
    is over the values written (each node once) is what the aliases add."""
    counts: dict[int, int] = {}
    stack, on_path = [(root, False)], set()
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            on_path.discard(id(node))
            counts[id(node)] = 1 + sum(counts[id(c)] for c in children)
            if counts[id(node)] - len(counts) > MAX_YAML_VALUES:
                raise _Refused(None, None, f"aliases add more than {MAX_YAML_VALUES:,} values "
                               "here", node.start_mark)  # fmt: skip
        elif id(node) in on_path:
            raise _Refused(None, None, "an alias inside the value it names", node.start_mark)
        elif id(node) not in counts:
            on_path.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise UserError(f"config file {path} {what}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except UnicodeDecodeError as e:
        raise UserError(f"config file {path}: not UTF-8 (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = e.problem if isinstance(e, _Refused) else "not valid YAML"
        raise UserError(f"config file {path}{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: top level must be a mapping")
    return data


@dataclasses.dataclass(frozen=True)
class Option:
    """One scalar field of a (nested) config, as an option: `name` is its dotted path
    (`pairs.sampling.model`), `section` the path of the config that holds it ("" for the
    top-level config's own fields); `default` is the value it takes where the option is not
    given (a parent's customised default of a nested config included), unless `required`."""

    name: str
    section: str
    field: dataclasses.Field
    type: Any
    required: bool
    default: Any = None

    def described(self, text: str) -> str:
        """`text` (a help) followed by the option's default and range; a default of None is
        left to a help that says what its default is."""
        meta = self.field.metadata
        notes = [describe_range(meta["range"])] if "range" in meta else []
        if not self.required and not (self.default is None and "default" in text):
            notes.insert(0, f"default: {self.default!r}")
        return f"{text} ({'; '.join(notes)})" if notes else text


def options(cls: type, prefix: str = "", base: Any = None) -> list[Option]:
    """Every scalar field of `cls` and of the configs nested in it, in field order; `base`: an
    instance whose values are the defaults (a nested config's customised default)."""
    found = []
    for f in dataclasses.fields(cls):
        tp = _field_type(cls, f)
        name = f"{prefix}{f.name}"
        if _is_dataclass_type(tp):
            nested = getattr(base, f.name) if base is not None else _default_instance(f, tp)
            found += options(tp, f"{name}.", nested)
            continue
        if base is not None:
            found.append(Option(name, prefix.rstrip("."), f, tp, False, getattr(base, f.name)))
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None
        if not required:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        found.append(Option(name, prefix.rstrip("."), f, tp, required, default))
    return found


def type_name(tp: Any) -> str:
    """A field's type as a reader writes it: `int | None`, `list[str]`, `'vllm' | 'hf'`."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    if tp is type(None):
        return "None"
    return "Any" if tp is Any else getattr(tp, "__name__", str(tp))


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    prefix: str = "",
    group: str = "cfg",
    help: dict[str, str] | None = None,
    title: str | None = None,
) -> None:
    """Add a `--field` (or `--section.field`) option for every scalar field of `cls`, its help
    from the field's metadata (or from `help`, by dotted name, where a command words it its own
    way) with its default and range. A field without a default is a required option;
    `metadata["short"]` adds an alias such as `-o`. Values land under `group` (see
    `overrides_from_args`). The options of each section (`pairs.sampling`) go in an argument
    group of that title; the fields of `cls` itself in one titled `title` (default: `group`, or
    for "cfg" the command's name)."""
    title = title or (group if group != "cfg" else parser.prog.rsplit(" ", 1)[-1])
    for option in options(cls, prefix):
        f, name = option.field, option.name
        text = (help or {}).get(name) or f.metadata.get("help", "")
        action = _section(parser, option.section or title).add_argument(
            *([f.metadata["short"]] if "short" in f.metadata else []),
            f"--{name}",
            dest=f"{group}:{name}",
            default=argparse.SUPPRESS,
            required=option.required,
            metavar=name.rsplit(".", 1)[-1].upper(),
            help=option.described(text).replace("%", "%%"),  # argparse %-formats help
        )
        action.option, action.option_help = option, text  # for docs/options.md


def _section(parser: argparse.ArgumentParser, title: str) -> Any:
    """The parser's argument group titled `title`, made on first use."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


# An action's attribute holding the help `--help` hides (where it shows the common options only)
# and `--help-all` shows.
_HIDDEN_HELP = "_hidden_help"
_HELPS = ("help", "help_all")
_ALWAYS_SHOWN = (*_HELPS, "config")  # dests `--help` shows whatever the command


class _HelpFormatter(argparse.HelpFormatter):
    """Each option's help on the lines below it, indented 6: dotted option names are long, and
    a help column beside them would leave the help a third of the width."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 6, **kw):
        super().__init__(prog, indent_increment, max_help_position, **kw)


class _HelpAll(argparse.Action):
    """`--help-all`: the help with every option, by section, then exit."""

    def __init__(self, option_strings, dest, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        for action in parser._actions:
            if hasattr(action, _HIDDEN_HELP):
                action.help = getattr(action, _HIDDEN_HELP)
        parser.epilog = None
        parser.print_help()
        parser.exit()


def add_help_all(parser: argparse.ArgumentParser, common: Collection[str]) -> None:
    """Make the command's `--help` short: it shows the options named in `common` (dotted names,
    as after `--`), `--config`, the arguments and the required options, and ends with a line
    pointing to `--help-all`, which this adds and which shows every option. Only what help
    prints changes: every option is parsed as before. A name in `common` that is no option of
    the parser is an error (a misspelt table entry fails when the parser is built)."""
    parser.formatter_class = _HelpFormatter
    parser.add_argument(
        "--help-all",
        action=_HelpAll,
        dest="help_all",
        help="show every option of this command, by section, and exit",
    )
    named = {
        a.dest.partition(":")[2]: a for a in parser._actions if a.option_strings and ":" in a.dest
    }
    unknown = sorted(set(common) - set(named))
    if unknown:
        raise ValueError(f"{parser.prog}: no option --{unknown[0]} to show in --help")
    every = [a for a in parser._actions if a.option_strings and a.dest not in _HELPS]
    for name, action in named.items():
        if name not in common and not action.required:
            setattr(action, _HIDDEN_HELP, action.help)
            action.help = argparse.SUPPRESS
    shown = sum(not hasattr(a, _HIDDEN_HELP) for a in every)
    parser.epilog = f"--help-all lists all {len(every)} options, by section ({shown} shown here)."
    # The usage names the arguments, --config and the required options only.
    brief = [a for a in parser._actions if not a.option_strings or a.required
             or a.dest in _ALWAYS_SHOWN]  # fmt: skip
    formatter = argparse.HelpFormatter(prog="")
    formatter.add_usage(None, [a for a in brief if a.option_strings], [], prefix="")
    flags = formatter.format_help().strip()
    formatter = argparse.HelpFormatter(prog="")
    formatter.add_usage(None, [a for a in brief if not a.option_strings], [], prefix="")
    positionals = formatter.format_help().strip()
    parser.usage = " ".join(
        part for part in ("%(prog)s", flags, "[--OPTION VALUE ...]", positionals) if part
    )


def overrides_from_args(args: argparse.Namespace, group: str = "cfg") -> dict[str, Any]:
    """The `--a.b value` options the user gave, of one `group`, as a nested mapping."""
    nested: dict[str, Any] = {}
    for key, value in vars(args).items():
        if not key.startswith(f"{group}:"):
            continue
        *parents, leaf = key.removeprefix(f"{group}:").split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(
    cls: type[T],
    config_path: str | Path | None,
    overrides: dict[str, Any] | None = None,
    section: str | None = None,
    whole: type | None = None,
) -> T:
    """YAML file (optional) overlaid with command-line `overrides` (a nested mapping, as
    `overrides_from_args` gives), parsed once into the typed config.

    `section` ("pairs", "train", ...) lets a stage command read its part of a whole pipeline
    config file (`whole`, the file's dataclass: every key of the file is checked against it, so
    a misspelt section is an error, not ignored; keys of the section that `cls` does not hold
    belong to the pipeline's other steps and are left to them); a file without that section is
    taken as the stage's own config.
    """
    data = read_yaml(config_path) if config_path else {}
    path = section.split(".") if section else []
    in_section = bool(path) and path[0] in data and isinstance(data[path[0]], (dict, type(None)))
    if in_section:  # a pipeline file: its section, or nothing where the file has none
        if whole is not None:
            try:
                check_keys(whole, data)
            except ConfigError as e:
                raise UserError(f"{config_path}: field {e.option}: {e.problem}") from None
        for depth, key in enumerate(path):
            data = data.get(key)
            data = {} if data is None else data  # an empty section: the defaults
            if not isinstance(data, dict):
                where = ".".join(path[: depth + 1])
                raise UserError(
                    f"{config_path}: field {where}: expected a mapping, got {shown(data)}"
                )
        if whole is not None:
            own = {f.name for f in dataclasses.fields(cls)}
            data = {k: v for k, v in data.items() if k in own}
    cli = overrides or {}
    try:
        return from_dict(cls, merge(data, cli))
    except ConfigError as e:
        if config_path is None or _has_path(cli, e.option):
            raise
        where = f"{section}.{e.option}" if in_section else e.option
        raise UserError(f"{config_path}: field {where}: {e.problem}") from None


def check_keys(cls: type, data: dict[str, Any], prefix: str = "") -> None:
    """Every key of a (nested) mapping names a field of `cls`; values are checked elsewhere."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
        if name not in fields:
            raise _unknown_key(prefix, name, fields)
        tp = _field_type(cls, fields[name])
        if _is_dataclass_type(tp) and isinstance(value, dict):
            check_keys(tp, value, f"{prefix}{name}.")


def _has_path(nested: dict[str, Any], dotted: str) -> bool:
    node: Any = nested
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def config_hash(cfg: Any) -> str:
    """Stable short hash of a config (or of a list of configs), stamped on what it produced."""
    blob = json.dumps(cfg, sort_keys=True, default=_as_data)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _as_data(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)


# "token" but not "tokens" or "tokenizer": counts and caps of tokens (max_new_tokens, a run's
# generated tokens) are no secret, and masking them hid them from every run summary.
SECRET_KEYS = re.compile(r"token(?!s|iz)|secret|password|passwd|api_?key|credential", re.IGNORECASE)
URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redacted(value: Any) -> Any:
    """A copy fit for logs and outputs: values of secret-named keys and the user:password part
    of URLs (s3://KEY:SECRET@bucket, https://user:token@host) are masked."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: "***" if SECRET_KEYS.search(str(k)) and v else redacted(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return URL_USERINFO.sub(r"\1***@", value)
    return value
