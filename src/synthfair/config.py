"""Frozen dataclass configs from YAML: unknown keys are errors that name the file and the key path.

@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-4
    channels: tuple[int, ...] = (32, 64)

cfg = load_config(TrainConfig, "configs/train.yaml")
json.dumps(config_to_dict(cfg))  # provenance for artifacts
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from synthfair.errors import ConfigError, did_you_mean

T = TypeVar("T")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate mapping keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# bounds on a YAML file (specs and configs may come from anyone): its bytes, and the values it expands to
# (aliases share objects, so a few kB of anchors can stand for billions of values: an "alias bomb")
MAX_YAML_BYTES = 1 << 20
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64


def read_yaml(path: str | Path, error: type[ConfigError] = ConfigError) -> Any:
    """Parse a YAML file; a missing file, bad syntax, a duplicate key, or a file beyond the bounds above
    (bytes, expanded values, nesting) raises ``error`` naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise error(
                f"{path} is {size} bytes, more than a spec or config ({MAX_YAML_BYTES})",
                hint="pass the spec file itself, not data",
            )
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"cannot read {path}: {err.strerror or err}", hint="check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(
            f"{path}: not UTF-8 text (byte {err.start}: {raw[err.start : err.start + 1]!r})",
            hint="save the file as UTF-8",
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:
        hint = f"keep nesting under {MAX_YAML_DEPTH} levels"
        raise error(f"{path}: nested too deeply", hint=hint) from None
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())[:500]
        raise error(f"{path}: invalid YAML: {detail}", hint="fix the YAML syntax at the line shown") from None
    _check_expansion(data, path, error)
    return data


def _check_expansion(data: Any, path: Path, error: type[ConfigError]) -> None:
    """Walk ``data`` as its users will (a shared object counts each time it is reached), stopping at the
    bounds: cheap however large the expansion would be."""
    stack, seen = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise error(
                f"{path}: expands to more than {MAX_YAML_VALUES} values (aliases repeated?)",
                hint="write the spec out; it needs far fewer values",
            )
        if depth > MAX_YAML_DEPTH:
            raise error(
                f"{path}: nested deeper than {MAX_YAML_DEPTH} levels",
                hint=f"keep nesting under {MAX_YAML_DEPTH} levels",
            )
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for pair in value.items() for v in pair)
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a YAML file into the dataclass ``cls``; an empty file gives the defaults."""
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys to values, got {type(data).__name__}",
            hint=f"allowed keys: {', '.join(_field_names(cls))}",
        )
    return dataclass_from_dict(cls, data, where=str(path))


def dataclass_from_dict(cls: type[T], data: Mapping, where: str = "<dict>", _key: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses, lists -> tuples.

    ``where`` names the origin (a file) in error messages; errors also name the key path (``model.unet.lr``).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {_key or '<top>'}: expected a mapping, got {data!r}")
    allowed = _field_names(cls)
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {_join(_key, key)!r}{did_you_mean(key, allowed)}",
                hint=f"allowed keys{' under ' + _key if _key else ''}: {', '.join(allowed)}",
            )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], where, _join(_key, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"{where}: missing required key {_join(_key, f.name)!r}", hint=f"add `{f.name}:`"
            )
    return cls(**kwargs)


def config_to_dict(obj: Any) -> Any:
    """A dataclass (or nested containers of them) as plain JSON/YAML-ready data: tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _convert(tp: Any, value: Any, where: str, key: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and convert it (lists -> tuples, str -> Path, ...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, where, key)
        return value  # a union of several types: not checked
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(
                f"{where}: {key}: {value!r} is not one of {list(args)}{did_you_mean(value, map(str, args))}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        return dataclass_from_dict(tp, value, where, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {value!r}")
        kind, item = args if args else (str, typing.Any)
        return {
            _convert(kind, k, where, key): _convert(item, v, where, _join(key, k)) for k, v in value.items()
        }
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where, f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: {key}: expected a list of {len(args)} items, got {value!r}")
        return tuple(
            _convert(a, v, where, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp in (int, float, str, bool) and (
        not isinstance(value, tp) or (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: {key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)
