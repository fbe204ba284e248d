"""recourse: sparse, plausible, actionable counterfactual recourse for tabular models (S-CFE).

The names a user needs, importable from the package itself::

    from recourse import demo_bundle, RequestOptions

    engine = demo_bundle("german").engine()
    [answer] = engine.explain(applicant, options=RequestOptions(max_changes=2))
    answer.status, answer.actions, answer.reasons

Bundles (:func:`load_bundle`, :func:`demo_bundle`, :func:`build_bundle`), the engine
(:class:`RecourseEngine`, :class:`SCFEConfig`, :class:`RequestOptions`), the results
(:class:`Recourse`, :class:`Alternative`, :class:`Action`, :class:`Decision`, :class:`Reason`),
the schema (:class:`FeatureSchema`), :func:`answers_frame` (a batch of answers as a DataFrame) and the errors (:class:`RecourseError` and its kinds).
Names are loaded on first use, so ``import recourse.core`` stays light.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "Bundle": "bundle", "load_bundle": "bundle", "demo_bundle": "bundle", "build_bundle": "bundle",
    "RecourseEngine": "scfe", "SCFEConfig": "config", "RequestOptions": "options",
    "Recourse": "results", "answers_frame": "results", "Alternative": "results", "Action": "results", "Decision": "results", "Reason": "results",
    "FeatureSchema": "schema", "Feature": "schema",
    "RecourseError": "errors", "RecordValidationError": "errors", "OptionsError": "errors",
    "SchemaError": "errors", "BundleError": "errors", "FieldError": "errors",
}
__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load lazily
    from .bundle import Bundle, build_bundle, demo_bundle, load_bundle
    from .config import SCFEConfig
    from .errors import BundleError, FieldError, OptionsError, RecordValidationError, RecourseError, SchemaError
    from .options import RequestOptions
    from .results import Action, Alternative, Decision, Reason, Recourse, answers_frame
    from .schema import Feature, FeatureSchema
    from .scfe import RecourseEngine


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'recourse' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
