"""Errors raised at the library boundary, each naming the field and the problem.

Every error the library raises for bad input derives from :class:`RecourseError` (itself a
``ValueError``), so a caller can catch them all at once.  Messages name fields and parameters
(``max_changes``, ``cost_weights.age``, ``3.age``), never command-line flags: the command line
and the HTTP service translate field names into their own vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass


class RecourseError(ValueError):
    """Base class of every input, schema, bundle or option error of the library."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of an input record (``field`` may be ``"record"`` or ``"3.age"``)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RecordValidationError(RecourseError):
    """An applicant record (or a batch of them) does not fit the feature schema."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("invalid input:\n" + "\n".join(f"  - {e}" for e in self.errors))


class OptionsError(RecordValidationError):
    """Request options (``max_changes``, ``density``, ``target``, ``alternatives``, ``cost_weights``) or
    solver settings (:class:`~recourse.scfe.SCFEConfig`) that cannot be used; each error names its field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        ValueError.__init__(self, "invalid options:\n" + "\n".join(f"  - {e}" for e in self.errors))


class SchemaError(RecourseError):
    """A feature schema file is inconsistent (message names the feature and the problem)."""


class BundleError(RecourseError):
    """A model bundle is missing, incomplete, tampered with, or incompatible."""
