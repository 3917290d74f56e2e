"""Typed rig-file sections: strict field coercion and errors that name the key path.

:class:`RigConfigError` is the one error a rig file can raise (``"FILE: KEY.PATH: problem"``);
:class:`_Spec` is the base of every section dataclass in :mod:`data_collection.rig_sections`:
its fields are checked against their annotations (a number is never a string, lists become
tuples, ints are accepted for floats), unknown and missing keys are reported with the allowed
ones, then the section's own ``_validate`` runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING
from typing import Any, ClassVar, Union

# --------------------------------------------------------------------------- errors


class RigConfigError(ValueError):
    """An invalid rig description. ``str(e)`` is ``"FILE: KEY.PATH: problem"`` (parts omitted when unknown).

    Attributes: ``problem`` (text), ``key`` (dotted key path, ``""`` = the whole section),
    ``source`` (the rig file, or ``None``).
    """

    def __init__(self, problem: str, key: str = "", source: str | None = None) -> None:
        self.problem = problem
        self.key = key
        self.source = source
        super().__init__(": ".join([p for p in (source, key) if p] + [problem]))

    def under(self, prefix: str) -> RigConfigError:
        """The same error with ``prefix`` (a section's key path) prepended to :attr:`key`."""
        if not prefix:
            return self
        key = prefix if not self.key else (prefix + self.key if self.key.startswith("[") else f"{prefix}.{self.key}")
        return RigConfigError(self.problem, key, self.source)

    def in_file(self, source: str | os.PathLike) -> RigConfigError:
        return RigConfigError(self.problem, self.key, str(source))


def _translate(exc: Exception, keys: typing.Iterable[str], prefix: str = "") -> RigConfigError:
    """A backend validation error (whose message starts with a field name, possibly after
    ``"camera: "``) as a :class:`RigConfigError` on that field."""
    text = str(exc)
    body = text.split(": ", 1)[1] if ": " in text and " " not in text.split(": ", 1)[0] else text
    for k in sorted(keys, key=len, reverse=True):
        if body == k or body.startswith((k + " ", k + "=")):
            return RigConfigError(body, k).under(prefix)
    return RigConfigError(text, prefix)


# --------------------------------------------------------------------------- typed fields

_NONE = type(None)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", _NONE: "null"}.get(
        hint, str(hint)
    )


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the annotation ``hint`` (lists become tuples, ints floats)."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and _NONE in args:
            return None
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return _coerce(value, arg, key)
            except RigConfigError:
                continue
        raise RigConfigError(f"must be {_describe(hint)}, got {value!r}", key)
    ok: bool
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        if ok:
            return float(value)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RigConfigError(f"must be {_describe(hint)}, got {value!r}", key)
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    elif origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise RigConfigError(f"must be a mapping with string keys, got {value!r}", key)
        return dict(value)
    else:  # pragma: no cover - only the annotations above are used
        raise TypeError(f"unsupported annotation {hint!r}")
    if not ok:
        raise RigConfigError(f"must be {_describe(hint)}, got {value!r}", key)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class _Spec:
    """Base of the rig sections: fields typed from their annotations, then :meth:`_validate`."""

    kind: ClassVar[str] = "section"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _coerce(getattr(self, f.name), hints[f.name], f.name))
        self._validate()

    def _validate(self) -> None:
        pass

    @classmethod
    def _keys(cls, data: Mapping[str, Any]) -> tuple[str, ...]:
        """Keys this section accepts (given its other keys, e.g. a camera's ``type``)."""
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Any, key: str, *, drop: tuple[str, ...] = ()) -> Any:
        """Build from a YAML mapping; ``key`` is this section's key path for errors."""
        if not isinstance(data, Mapping):
            raise RigConfigError(f"must be a mapping of keys, got {data!r}", key)
        allowed = cls._keys(data)
        for k in data:
            if not isinstance(k, str) or (k not in allowed and k not in drop):
                raise RigConfigError(
                    f"unknown key; allowed keys for {cls._what(data)}: {', '.join(drop + allowed)}", f"{key}.{k}"
                )
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.default is MISSING and f.default_factory is MISSING and f.name not in data:
                raise RigConfigError(f"missing required key {f.name!r} ({cls._what(data)})", key)
        try:
            return cls(**{k: v for k, v in data.items() if k not in drop})
        except RigConfigError as e:
            raise e.under(key) from None

    @classmethod
    def _what(cls, data: Mapping[str, Any]) -> str:
        return cls.kind

