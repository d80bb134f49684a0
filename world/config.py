"""Strict configuration loading: a TOML table or a dict becomes a dataclass, and a key the dataclass does not
know is an error that names the file, the table and the keys allowed, never a silently ignored typo."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot be loaded; the message names where and what."""


def check_keys(given: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Raise ConfigError when `given` has keys outside `allowed`."""
    allowed_set = set(allowed)
    unknown = sorted(set(given) - allowed_set)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed_set)}")


def field_names(cls: type) -> list[str]:
    """The init fields of dataclass `cls`, in declaration order."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build dataclass `cls` from `data`, refusing unknown keys and wrapping the dataclass's own checks."""
    check_keys(data, field_names(cls), where)
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def read_document(path: str | Path, what: str = "file") -> dict[str, Any]:
    """The whole TOML document at `path`; a missing or malformed file is a ConfigError that names it."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such {what}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None


def read_table(path: str | Path, table: str) -> dict[str, Any]:
    """Table `table` of TOML file `path` ({} when the file has none)."""
    value = read_document(path).get(table, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{table}] must be a table, not {type(value).__name__}")
    return value


def load_table(cls: type[T], path: str | Path, table: str) -> T:
    """Dataclass `cls` from table `table` of TOML file `path`."""
    return from_mapping(cls, read_table(path, table), f"{path}: [{table}]")
