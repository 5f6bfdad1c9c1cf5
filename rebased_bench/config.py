"""Typed case configs: a suite's flat fields in; checked values, columns and a case id out.

A config is a frozen, keyword-only dataclass deriving from `Config`. Its fields are typed with int, float, bool,
str, Literal[...] of strings, `X | Y` and Annotated[X, Check(...)]; a field typed with another Config is a part
(the model, data or training of a case), whose fields sit beside the config's own in the flat form that suite
files, result rows and case ids use. Every value is checked when a config is built, so bad input fails before
anything runs, as a FieldError naming the field and what it expected:
- an int field takes an int that fits the store's int64 columns (not a bool, not 2.0);
- a float field takes an int or a float (an int becomes a float) that is finite (not nan, not inf);
- Annotated checks (`Count`: >= 1, `Positive`: > 0, ...) and each config's __post_init__ check the rest.
"""

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

import pyarrow as pa

from .errors import BenchError

INT64_RANGE = (-2 ** 63, 2 ** 63 - 1)
ARROW_TYPES = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
TYPE_WORDS = {int: "a 64-bit integer", float: "a finite number", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class Check:
    """A condition a field's value must meet, with the words an error message gives for it."""

    holds: Callable[[Any], bool]
    expected: str


Count = Annotated[int, Check(lambda v: v >= 1, ">= 1")]
NonNegative = Annotated[int, Check(lambda v: v >= 0, ">= 0")]
Positive = Annotated[float, Check(lambda v: v > 0, "> 0")]

# Field metadata for a field's place in the case id (dataclasses.field(metadata=...)):
IGNORED = {"identity": "ignored"}  # where files go does not change the result: left out of the case id
WHEN_SET = {"identity": "when set"}  # in the flat form (and the case id) only when not None


class FieldError(BenchError):
    """Bad input in one field: the message names the field and what it expected."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def case_id(fields: dict) -> str:
    """A stable id: the sha1 of the canonical (sorted-key JSON) fields, 12 hex digits."""
    canonical = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class Config:
    """Base of typed case configs: checks every field on construction; flat form, case id and columns."""

    def __post_init__(self):
        for field, annotation in _own_fields(type(self)):
            value = getattr(self, field.name)
            if _is_part(annotation):
                if not isinstance(value, annotation):
                    raise TypeError(f"{field.name}: expected a {annotation.__name__}, got {value!r}")
            else:
                object.__setattr__(self, field.name, _checked(field.name, value, annotation))

    @classmethod
    def from_flat(cls, fields: dict):
        """Build from flat fields (one suite case); an unknown, missing or ill-typed field is a FieldError."""
        known = flat_fields(cls)
        for name in fields:
            if name not in known:
                raise FieldError(name, f"unknown field; {cls.__name__} has {', '.join(known)}")
        return _build(cls, fields)

    @classmethod
    def field_value(cls, name: str, value):
        """`value` checked as the flat field `name` takes it (FieldError otherwise)."""
        return _checked(name, value, flat_fields(cls)[name][1])

    def flat(self) -> dict:
        """The flat form: every field by name, parts' fields beside the config's own; unset WHEN_SET fields left out."""
        values = {}
        for field, annotation in _own_fields(type(self)):
            value = getattr(self, field.name)
            if _is_part(annotation):
                values.update(value.flat())
            elif value is not None or field.metadata != WHEN_SET:
                values[field.name] = value
        return values

    @property
    def case_id(self) -> str:
        """The id of this case's row: a hash of the flat form without the IGNORED fields."""
        ignored = {name for name, (field, _) in flat_fields(type(self)).items() if field.metadata == IGNORED}
        return case_id({name: value for name, value in self.flat().items() if name not in ignored})

    def for_device(self, device) -> "Config":
        """This config with its device-dependent defaults settled (override where a field is "auto" by device)."""
        return self

    @classmethod
    def columns(cls) -> pa.Schema:
        """The typed columns of the flat form, in field order."""
        return pa.schema([(name, ARROW_TYPES[value_type(annotation)])
                          for name, (_, annotation) in flat_fields(cls).items()])


@functools.cache
def _own_fields(cls) -> tuple:
    """(dataclasses.Field, annotation) of the class's own fields, annotations resolved."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((field, hints[field.name]) for field in dataclasses.fields(cls))


@functools.cache
def flat_fields(cls) -> dict:
    """name -> (Field, annotation) of every flat field of a config class, parts' fields included, in order."""
    fields = {}
    for field, annotation in _own_fields(cls):
        inner = flat_fields(annotation) if _is_part(annotation) else {field.name: (field, annotation)}
        for name in inner:
            if name in fields:
                raise TypeError(f"{cls.__name__}: two fields named {name!r} in its flat form")
        fields.update(inner)
    return fields


def _build(cls, fields: dict):
    values = {}
    for field, annotation in _own_fields(cls):
        if _is_part(annotation):
            values[field.name] = _build(annotation, fields)
        elif field.name in fields:
            values[field.name] = fields[field.name]
        elif field.default is dataclasses.MISSING:
            raise FieldError(field.name, f"missing (expected {describe(annotation)})")
    return cls(**values)


def _is_part(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Config)


def _options(annotation) -> list[tuple[Any, tuple]]:
    """(base type, checks) of each alternative of a field's annotation."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = []
    for option in typing.get_args(annotation) if union else (annotation,):
        if typing.get_origin(option) is Annotated:
            options.append((typing.get_args(option)[0], option.__metadata__))
        else:
            options.append((option, ()))
    return options


def value_type(annotation) -> type:
    """The Python type of a field's checked value (int, float, bool or str; a Literal of strings is a str)."""
    bases = [base for base, _ in _options(annotation)]
    return next((base for base in bases if base in ARROW_TYPES), str)


def _fits(base, value) -> bool:
    if base is type(None):
        return value is None
    if typing.get_origin(base) is Literal:
        return isinstance(value, str) and value in typing.get_args(base)
    if isinstance(value, bool) or base is bool:
        return base is bool and isinstance(value, bool)
    if base is int:
        return isinstance(value, numbers.Integral) and INT64_RANGE[0] <= value <= INT64_RANGE[1]
    if base is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    if base is str:
        return isinstance(value, str)
    raise TypeError(f"unsupported field type {base!r}")


def _checked(name: str, value, annotation):
    """`value` as the field's type (an int for a float field becomes a float), or a FieldError."""
    for base, checks in _options(annotation):
        try:
            if not _fits(base, value):
                continue
        except OverflowError:  # an int too large for a float
            continue
        typed = float(value) if base is float else int(value) if base is int else value
        if all(check.holds(typed) for check in checks):
            return typed
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise FieldError(name, f"expected {describe(annotation)}, got {shown}")


def describe(annotation) -> str:
    """What a field takes, in words: "a 64-bit integer >= 1 or 'paper'"."""
    words = []
    for base, checks in _options(annotation):
        if base is type(None):
            continue
        if typing.get_origin(base) is Literal:
            choices = typing.get_args(base)
            word = ("one of " if len(choices) > 1 else "") + ", ".join(map(repr, choices))
        else:
            word = TYPE_WORDS[base]
        words.append(" ".join([word, *(check.expected for check in checks)]))
    return " or ".join(words)
