"""The tabular recourse engine (S-CFE): records in, verified :class:`Recourse` objects out.

:class:`RecourseEngine` is a thin conductor over parts with one job each:

* :mod:`recourse.options`: the request options, checked once (the same rules for every caller);
* :mod:`recourse.search` (:class:`SparseSearch`): the batched loss-weight search with the
  proximal solver, discrete repair and cost polish;
* :mod:`recourse.verify` (:class:`Verification`): the deciding model and the admissibility gate
  every answer passes on its final decoded values;
* :mod:`recourse.alternatives`: alternatives with pairwise different changed-feature sets;
* :mod:`recourse.diagnosis`: why a row has no recourse;
* :mod:`recourse.assemble` (:class:`Assembler`) and :mod:`recourse.reasons`: the answers.

Pipeline per batch: validate → encode (codes, then the scaled encoding) → the model's decision
→ search for the rows not yet in the target class → verify → (alternatives) → diagnose failures
→ assemble → principal reasons.  Everything runs on arrays batched over rows.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .alternatives import find_alternatives
from .assemble import Assembler, Batch
from .committee import Committee
from .config import SCFEConfig
from .diagnosis import explain_failures
from .encoding import TabularEncoder
from .exact_linear import linear_polish, milp_by_target
from .errors import FieldError, OptionsError, RecordValidationError
from .metrics import lof_scores
from .options import NO_DENSITY, RequestOptions, ResolvedOptions
from .reasons import principal_reasons
from .results import Decision, Recourse
from .runtime import threads_for
from .schema import FeatureSchema, ScoreTarget, json_type
from .scores import ScoreReading, affine_output, requested_target
from .search import SparseSearch
from .verify import BatchSolution, Verification

__all__ = ["BatchSolution", "RecourseEngine", "SCFEConfig"]


class RecourseEngine:
    """Batched S-CFE over a schema, a differentiable classifier and fitted class-conditional densities.

    ``classifier``: the differentiable model the search follows; ``verifier``: the model whose
    decisions count when it is another one (e.g. a tree ensemble the classifier is a surrogate
    of; default: the classifier).  ``train_encoded``/``train_labels``: the training rows, for the
    LOF plausibility score.  ``config``: the solver settings (:class:`SCFEConfig`, checked).
    """

    def __init__(
        self,
        schema: FeatureSchema,
        classifier: Any,
        densities: dict[str, Any] | None = None,
        train_encoded: np.ndarray | None = None,
        train_labels: np.ndarray | None = None,
        config: SCFEConfig | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        verifier: Any | None = None,
        family: Sequence[Any] = (),
        score_scale: float | None = None,
    ):
        self.schema = schema
        self.encoder = TabularEncoder(schema)
        self.device = torch.device(device) if device is not None else classifier.device
        self.dtype = dtype
        self.classifier = classifier.to(self.device, dtype)
        self.verifier = verifier.to(self.device, dtype) if verifier is not None else self.classifier
        self.densities = {k: d.to(self.device, dtype) for k, d in (densities or {}).items()}
        self.config = config or SCFEConfig()
        self.train_encoded = train_encoded
        self.train_labels = train_labels
        self.classes = list(classifier.classes)
        self.score: ScoreReading | None = None
        """For a score target (:mod:`recourse.scores`): how the model's binary logit reads as the score."""
        if schema.score_target is not None:
            if score_scale is None:
                raise RecordValidationError([FieldError("score_scale", "a score target needs the scale its model was folded with")])
            self.score = ScoreReading.of(schema.score_target, score_scale)
        self._lof_cache: dict[int, Any] = {}
        schema_weights = np.array([f.cost_weight for f in schema.features], dtype=float)
        self.verification = Verification(self.encoder, self.verifier, self.device, self.dtype, schema_weights)
        self.search = SparseSearch(self.encoder, self.classifier, self.verification, self.densities,
                                   lof=self.lof if train_encoded is not None else None)
        self.assembler = Assembler(schema, self.encoder, self.classes, self.lof,
                                   scorer=self.scores if self.score is not None else None)
        self.family = [m.to(self.device, dtype) for m in family]
        """Refits of the model (the same recipe on resamples): with ``robust``, a committee verifies
        and steers (:mod:`recourse.committee`)."""
        self._robust: SparseSearch | None = None

    def search_for(self, config: SCFEConfig) -> SparseSearch:
        """The search of a call: the plain one, or (``config.robust``) the committee's, which steers
        with and verifies against the model and every refit of it."""
        if not config.robust:
            return self.search
        if self._robust is None:
            if not self.family:
                raise RecordValidationError([FieldError("robust", "this engine has no family of refits")])
            verifying = Committee([self.verifier, *self.family])
            steering = verifying if self.verifier is self.classifier else Committee([self.classifier, *self.family])
            gate = Verification(self.encoder, verifying, self.device, self.dtype, self.verification.cost_weights)
            self._robust = SparseSearch(self.encoder, steering, gate, self.densities,
                                        lof=self.lof if self.train_encoded is not None else None)
        return self._robust

    # ------------------------------------------------------------------ public API
    def explain(
        self,
        records: dict | Sequence[dict] | pd.DataFrame,
        *,
        max_changes: int | None = None,
        density: str | None | bool = True,
        target: int | str | Sequence[int | str] | None = None,
        alternatives: int | None = None,
        cost_weights: dict[str, float] | None = None,
        min_probability: float | None = None,
        fixed: Sequence[str] | None = None,
        limits: dict[str, Sequence[Any]] | None = None,
        robust: bool | None = None,
        options: RequestOptions | None = None,
    ) -> list[Recourse]:
        r"""Recourse for each record (validated first; errors name row and field).

        ``target``: the class to reach (default: the schema's favourable class), one value or
        one per row.  ``density=True`` uses the configured density, ``None``/``False``/"none"
        none.  ``alternatives``: K from 1 to 10, also return up to K verified counterfactuals with
        pairwise different changed-feature sets (:attr:`Recourse.alternatives`, the ordinary
        answer first, then by cost).  ``cost_weights``: per-feature weights ω_j > 0 overriding the
        schema's ``cost_weight`` for this call: the cost becomes
        :math:`\sum_j \omega_j |\Delta_j| / s_j` (reported, ranked and used by the repair) and the
        solver's proximity weights of feature j are multiplied by :math:`\omega_j^2`.
        ``max_changes`` above the number of features is clipped to it (see :mod:`recourse.options`).
        ``min_probability``: the least target-class probability of every answer (default: the
        engine's configuration, from the bundle); ``fixed``: features this applicant cannot change; ``limits``: {feature: [low, high]}, the
        values the applicant can reach (numbers, or level names of an ordinal; None: open end).
        ``robust``: verify every answer with the model and each of its refits (a bundle's family).
        ``options``: the same settings as one :class:`RequestOptions` (instead of the keywords).
        """
        rows = self.validated(records)
        if options is None:
            density = None if density is True else NO_DENSITY if density is None or density is False else density
            options = RequestOptions(max_changes=max_changes, density=density,
                                        target=target, alternatives=alternatives, cost_weights=cost_weights,
                                        min_probability=min_probability, fixed=fixed, limits=limits, robust=robust)
        if isinstance(options.target, dict):  # a threshold of the request's own (a score target only)
            if self.score is None:
                raise OptionsError([FieldError("target", "this model decides classes, not a score; at_least / at_most "
                                                         f"apply to a score target (classes: {self.classes})")])
            asked = requested_target(options.target, self.schema.score_target)
            return self.for_score(asked).explain(rows, options=options.model_copy(update={"target": None}))
        resolved = self.resolve(options)
        config = resolved.config
        deadline = time.perf_counter() + config.time_limit if config.time_limit is not None else None
        codes = self.encoder.to_codes(rows)
        x = self.encoder.encode_codes(codes)
        with threads_for(self.device, x.size):
            probs = self.predict_proba(x)
            targets = self.target_indices(resolved.target, len(rows))
            batch = Batch(rows, codes, x, probs, targets, np.flatnonzero(probs.argmax(1) != targets))
            need = batch.need
            actions = resolved.actions  # the request's personal limits (None: the schema's rules alone)
            search = self.search_for(config)
            solution = search.solve(x[need], codes[need], targets[need], config, deadline, actions=actions)
            if (config.linear_exact and not config.robust and actions is None and config.cost_weights is None
                    and self.is_linear(targets[need])):
                threshold = config.margin_threshold(len(self.classes))
                polished = linear_polish(self, search.verification.confident(threshold), codes[need], targets[need],
                                         solution, config.max_changes, threshold, guard=config.density is not None)
                solution = solution if polished is None else polished
            alts = None
            if resolved.alternatives is not None:
                alts = find_alternatives(search, x[need], codes[need], targets[need], solution, config, deadline,
                                         resolved.alternatives, actions)
            linear = not config.robust and actions is None and self.is_linear(targets[need])
            certify = self._milp_certificate(codes[need], targets[need], config) if linear else None
            failures = explain_failures(search, x[need], codes[need], targets[need], solution, config, deadline,
                                        actions, certify)
            results = self.assembler.assemble(batch, solution, config, failures, alts)
            for result, reasons in zip(results, principal_reasons(self, results)):
                result.reasons = reasons
            return results

    def scores(self, encoded: np.ndarray) -> np.ndarray:
        """The score model's prediction f per scaled row (a score target only): :math:`\tau + s\sigma z`."""
        if self.score is None:
            raise TypeError("this engine decides classes, not a score")
        rows = np.atleast_2d(encoded)
        return self.score.score(self.verification.margin(rows, np.ones(len(rows), dtype=np.int64)))

    def for_score(self, target: "ScoreTarget") -> "RecourseEngine":
        """An engine deciding ``target`` (another threshold or side of the same score): the model's
        logit refolded exactly (:meth:`ScoreReading.refold`), the same densities (their classes
        swapped when the side changes), the training rows labelled by the model at the new threshold
        for LOF; cached per threshold."""
        if self.score is None:
            raise TypeError("this engine decides classes, not a score")
        cache = self.__dict__.setdefault("_score_engines", {})  # shared with with_config copies: keyed by config too
        key = (target.threshold, target.direction, self.config)
        if key not in cache:
            a, b = self.score.refold(target)
            flip = a < 0
            densities = {k: (d.swapped() if flip else d) for k, d in self.densities.items()}
            labels = None
            if self.train_encoded is not None:
                from .scores import reached

                labels = reached(self.scores(self.train_encoded), target)
            cache[key] = RecourseEngine(
                self.schema.model_copy(update={"target": target}), affine_output(self.classifier, a, b), densities,
                self.train_encoded, labels, self.config, self.device, self.dtype,
                verifier=None if self.verifier is self.classifier else affine_output(self.verifier, a, b),
                score_scale=self.score.scale)
            if len(cache) > 32:
                cache.pop(next(iter(cache)))
        return cache[key]

    def linear_margin(self, target: int):
        """The deciding model's margin of class ``target`` as an affine map of the scaled encoding
        (:class:`recourse.milp.LinearMargin`), None when it is not affine; probed once per class."""
        from .milp import linear_margin

        cache = self.__dict__.setdefault("_linear", {})
        if target not in cache:
            cache[target] = linear_margin(self, target)
        return cache[target]

    def is_linear(self, targets: np.ndarray) -> bool:
        """Whether the margin of every target class in ``targets`` is affine (a binary logistic
        model: the exact MILP applies)."""
        return all(self.linear_margin(int(t)) is not None for t in np.unique(np.asarray(targets)))

    def _milp_certificate(self, codes: np.ndarray, targets: np.ndarray, config: SCFEConfig):
        """For a linear binary model and the schema's own rules, ``certify(rows, m)``: whether the
        exact MILP (:mod:`recourse.milp`) proves that rows ``rows`` have no recourse with at most m
        changes at the call's confidence (None for other models)."""
        def certify(rows: np.ndarray, max_changes: int) -> np.ndarray | None:
            solved = milp_by_target(self, codes[rows], targets[rows], max_changes,
                                    config.margin_threshold(len(self.classes)))
            return None if solved is None else solved[0] == "infeasible"
        return certify

    def resolve(self, options: RequestOptions) -> ResolvedOptions:
        """The settings of a call: this engine's configuration with the request's options (checked)."""
        return options.resolve(self)

    def with_config(self, **changes: Any) -> "RecourseEngine":
        """An engine sharing this one's model, densities and caches, with solver settings changed
        (e.g. ``time_limit``); this engine is left as it is."""
        other = object.__new__(RecourseEngine)
        other.__dict__.update(self.__dict__)
        other.config = self.config.with_(**changes)
        return other

    def validate(self, records: dict | Sequence[dict] | pd.DataFrame) -> pd.DataFrame:
        """Validated records as a DataFrame in schema column order."""
        return pd.DataFrame(self.validated(records), columns=self.schema.names)

    def validated(self, records: dict | Sequence[dict] | pd.DataFrame) -> list[dict[str, Any]]:
        """Validated records as dicts (ints, floats, bools, level names), in input order."""
        if isinstance(records, pd.DataFrame):
            rows = records.to_dict(orient="records")
        elif isinstance(records, dict):
            rows = [records]
        elif isinstance(records, (list, tuple)):
            rows = list(records)
        else:
            raise RecordValidationError([FieldError("records", "expected an applicant object or a list of them, "
                                                    f"got {json_type(records)}")])
        if len(rows) == 1 and isinstance(records, dict):
            return [self.schema.validate_record(rows[0])]
        return self.schema.validate_records(rows)

    def encode(self, records: dict | Sequence[dict] | pd.DataFrame) -> np.ndarray:
        """The scaled encoding (N, D) of records (validated first)."""
        return self.encoder.encode_codes(self.encoder.to_codes(self.validated(records)))

    def predict(self, records: dict | Sequence[dict] | pd.DataFrame) -> tuple[list[Decision], np.ndarray]:
        """The model's decision for each record (validated first) and its probabilities (N, C)."""
        encoded = self.encode(records)
        probs = self.predict_proba(encoded)
        pred = probs.argmax(1)
        scores = self.scores(encoded) if self.score is not None else [None] * len(pred)
        return [self.assembler.decision(int(k), probs[i, k], scores[i]) for i, k in enumerate(pred)], probs

    def decision(self, class_index: int, probability: float) -> Decision:
        """The decision for a class index: class value, display label and the given probability."""
        return self.assembler.decision(class_index, probability)

    def predict_proba(self, records: dict | Sequence[dict] | pd.DataFrame | np.ndarray) -> np.ndarray:
        """The deciding model's probabilities (N, C), columns in the schema's class order, for raw
        records (a dict, a list of dicts or a DataFrame, validated first) or for scaled rows (an
        (N, D) array of the encoding)."""
        if isinstance(records, (dict, list, tuple, pd.DataFrame)):
            records = self.encode(records)
        return self.verification.predict_proba(np.atleast_2d(records))

    def margin(self, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Logit margin of the target class per row (> 0: the model picks the target class)."""
        return self.verification.margin(encoded, targets)

    def solve(self, x: np.ndarray, originals: pd.DataFrame | np.ndarray, targets: np.ndarray,
              config: SCFEConfig) -> BatchSolution:
        """Cheapest verified counterfactual per row (target class indices ``targets``).

        ``originals``: the rows' raw records (a DataFrame) or their codes (see
        :meth:`TabularEncoder.to_codes`); ``x`` their scaled encoding.
        """
        codes = self.encoder.to_codes(originals) if isinstance(originals, pd.DataFrame) else np.asarray(originals, float)
        deadline = time.perf_counter() + config.time_limit if config.time_limit is not None else None
        return self.search.solve(np.asarray(x, dtype=np.float64), codes, np.asarray(targets, dtype=np.int64),
                                 config, deadline)

    def change_costs(self, a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        r"""Cost :math:`\sum_j \omega_j |\Delta_j| / s_j` per row between codes ``a`` and ``b`` (ω: the schema's if None)."""
        return self.verification.cost(a, b, weights)

    def lof(self, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Target-class local outlier factor (≈1 inlier, larger = outlier), NaN without training data."""
        if self.train_encoded is None or len(encoded) == 0:
            return np.full(len(encoded), np.nan)
        return lof_scores(self.train_encoded, self.train_labels, encoded, targets, cache=self._lof_cache)

    def target_indices(self, target: Any, n: int) -> np.ndarray:
        """Class indices of the requested target (None: the favourable class), one value or one per row."""
        if target is None:
            if self.schema.target is None:
                raise RecordValidationError([FieldError("target", "no target given and the schema names no favourable class")])
            target = self.schema.target.favourable
        values = list(target) if isinstance(target, (list, tuple, np.ndarray, pd.Series)) else [target] * n
        if len(values) != n:
            raise RecordValidationError([FieldError("target", f"expected {n} target values, got {len(values)}")])
        index = {str(c): i for i, c in enumerate(self.classes)}
        out = []
        for v in values:
            if str(v) not in index:
                raise RecordValidationError([FieldError("target", f"unknown class {v!r}; classes: {self.classes}")])
            out.append(index[str(v)])
        return np.asarray(out, dtype=np.int64)
