"""Errors raised at the library boundary, each naming the field and the problem."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of an input record (``field`` may be ``"record"`` or ``"3.age"``)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RecordValidationError(ValueError):
    """An applicant record (or a batch of them) does not fit the feature schema."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("invalid input:\n" + "\n".join(f"  - {e}" for e in self.errors))


class SchemaError(ValueError):
    """A feature schema file is inconsistent (message names the feature and the problem)."""


class BundleError(ValueError):
    """A model bundle is missing, incomplete, tampered with, or incompatible."""
