"""Frozen value types made on every call (a request's facts, its tags, its hold, its usage): frozen for the type
checker, which refuses any assignment to them, and plain slotted dataclasses at run time, where a frozen one sets
each field through object.__setattr__ (a quarter of the construction cost without it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)  # hashed by their fields, as frozen ones are
