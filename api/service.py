"""The service's work, independent of HTTP: validate, solve (micro-batched), explain, log.

Routes parse bodies into :mod:`api.schemas` models, call a :class:`RecourseService` method and
send what it returns; every error is a :class:`~api.problems.Problem`.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from recourse.bundle import Bundle
from recourse.errors import OptionsError, RecordValidationError
from recourse.options import RequestOptions
from recourse.promises import check_promises
from recourse.results import to_jsonable
from recourse.scores import requested_target

from .batching import MicroBatcher, Overloaded
from .config import ServiceConfig
from .keys import Client
from .log import ID_DIGITS, Entry, ExplanationLog, is_answer_id
from .openapi import example_applicant
from .problems import Problem, describe, field_error
from .schemas import BatchRequest, Options, PredictRequest, RecourseRequest
from .telemetry import Telemetry


@dataclass(frozen=True)
class SolverKey:
    """The resolved solver options shared by the entries of one engine call (hashable: the batcher
    groups waiting entries by it); ``density`` None means none."""

    max_changes: int
    density: str | None
    alternatives: int | None = None
    cost_weights: tuple[tuple[str, float], ...] | None = None
    fixed: tuple[str, ...] | None = None
    limits: tuple[tuple[str, tuple[Any, Any]], ...] | None = None
    min_probability: float | None = None
    robust: bool = False
    score: tuple[str, float] | None = None
    """A bundle that decides a score: the request's own threshold (``("at_least", 700.0)``), None: the bundle's."""

    def request(self) -> dict[str, Any]:
        """The options as logged with each answer (the ones not set are left out, as before)."""
        out: dict[str, Any] = {"max_changes": self.max_changes, "density": self.density}
        if self.alternatives is not None:
            out["alternatives"] = self.alternatives
        if self.cost_weights:
            out["cost_weights"] = dict(self.cost_weights)
        if self.fixed:
            out["fixed"] = list(self.fixed)
        if self.limits:
            out["limits"] = {k: list(v) for k, v in self.limits}
        if self.min_probability is not None:
            out["min_probability"] = self.min_probability
        if self.robust:
            out["robust"] = True
        return out

    def explain_options(self) -> dict[str, Any]:
        """Keyword options of :meth:`RecourseEngine.explain`."""
        return {"max_changes": self.max_changes, "density": self.density, "alternatives": self.alternatives,
                "cost_weights": dict(self.cost_weights) if self.cost_weights else None,
                "fixed": list(self.fixed) if self.fixed else None,
                "limits": {k: list(v) for k, v in self.limits} if self.limits else None,
                "min_probability": self.min_probability, "robust": self.robust}


Gone = Callable[[], bool]
"""gone() -> whether the client of the request has hung up."""
POLL_SECONDS = 0.25
"""How often a waiting request checks whether its client is still there."""


def _owner(client: Client | None) -> str | None:
    """The owner recorded with an answer: the asking key's digest (None without authentication)."""
    return None if client is None else client.digest


class RecourseService:
    """One bundle, its engine, the micro-batcher and the explanation log."""

    def __init__(self, bundle: Bundle, config: ServiceConfig, log: ExplanationLog, telemetry: Telemetry):
        self.bundle, self.config, self.log, self.telemetry = bundle, config, log, telemetry
        self.engine = bundle.engine().with_config(time_limit=config.time_limit)
        meta = bundle.metadata
        self.model_ref = {"id": f"{meta.get('dataset', bundle.schema.name)}-{meta.get('model', 'model')}", "hash": bundle.hash}
        self.batcher = MicroBatcher(self._solve, max_rows=config.max_solver_rows, on_batch=telemetry.batch_rows.observe,
                                    finish=self._log, max_wait=config.batch_wait, max_queued_rows=config.max_queued_rows,
                                    on_shed=lambda reason, rows: telemetry.shed.labels(reason).inc(rows))
        self.ready = False
        self.promise_report = None

    # ------------------------------------------------------------------ lifecycle
    def warm_up(self, example: dict[str, Any] | None = None) -> None:
        """Run the solver once so the first real request pays no start-up cost."""
        record = example or example_applicant(self.engine.schema)
        self.engine.explain([record])
        self.ready = True

    def check_earlier_promises(self) -> None:
        """Re-verify, with this bundle's model, the answers the log holds from other bundles (a model
        update): counts in :attr:`promise_report` (the readiness document shows them) and in the
        ``recourse_earlier_promises`` metric.  Nothing is checked when the log has no such answers."""
        promises = self.log.promises(other_than=self.bundle.hash)
        self.promise_report = check_promises(self.engine, promises) if promises else None
        if self.promise_report is not None:
            for outcome in ("kept", "broken", "uncheckable"):
                self.telemetry.promises.labels(outcome).set(getattr(self.promise_report, outcome))

    def promise_note(self) -> dict[str, Any] | None:
        """The start-up check of earlier promises for the readiness document (None: nothing to check)."""
        r = self.promise_report
        if r is None:
            return None
        return {"checked": r.kept + r.broken, "kept": r.kept, "broken": r.broken, "uncheckable": r.uncheckable,
                "note": f"{r.broken} of {r.kept + r.broken} answers given under earlier bundles would not hold "
                        "under this one (recourse promises check lists them)"}

    def close(self) -> None:
        self.batcher.close()

    # ------------------------------------------------------------------ endpoints
    def recourse(self, request: RecourseRequest, client: Client | None = None, gone: Gone | None = None) -> str:
        key, target, records = self._checked(request, [request.applicant], ["applicant"], single=True)
        [item] = self._answer("recourse", key, target, records, _owner(client), gone)
        return item["text"]

    def recourse_batch(self, request: BatchRequest, client: Client | None = None, gone: Gone | None = None) -> str:
        if len(request.applicants) > self.config.max_batch:
            raise Problem(422, "too many applicants in one batch",
                          [field_error(["applicants"], f"at most {self.config.max_batch} applicants per request, got {len(request.applicants)}")])
        key, target, records = self._checked(request, request.applicants, ["applicants"], single=False)
        items = self._answer("recourse", key, target, records, _owner(client), gone)
        head = json.dumps({"count": len(items), "model": self.model_ref})
        return head[:-1] + ', "results": [' + ", ".join(i["text"] for i in items) + "]}"

    def predict(self, request: PredictRequest, client: Client | None = None) -> str:
        record = self._validate([request.applicant], ["applicant"], single=True)[0]
        [decision], probs = self.engine.predict([record])
        probs = probs[0]
        target = self.engine.schema.target
        answer = {
            "model": self.model_ref,
            "decision": decision.to_dict(),
            "favourable": target is not None and str(decision.value) == str(target.favourable),
        }
        if decision.score is None:  # a score's decision carries the score; its folded "probabilities" mean nothing
            answer["probabilities"] = {str(c): float(p) for c, p in zip(self.engine.classes, probs)}
        answer = to_jsonable(answer)
        [item] = self._wait(self.batcher.submit_solved([Entry("predict", {"applicant": record}, answer, _owner(client))]))
        return item["text"]

    def stored(self, answer_id: str, client: Client | None = None) -> str:
        """A stored answer: a client key reads only the answers it asked for (others: 404, the same
        as no such answer); an auditor or admin key, or a service without authentication, reads any."""
        every = client is None or client.reads_all
        text = self.log.response(answer_id, _owner(client), every) if is_answer_id(answer_id) else None
        if text is None:
            raise Problem(404, f"no answer with id {describe(answer_id)} (answer ids are {ID_DIGITS} hexadecimal digits)")
        return text

    def erase(self, answer_id: str, client: Client | None) -> str:
        """Erase one stored answer for good (admin keys only; recorded in the log's erasures)."""
        if client is not None and not client.is_admin:
            raise Problem(403, "erasing an answer needs an admin key (role=admin in the key file)")
        if not (is_answer_id(answer_id) and self.log.erase(answer_id, by=_owner(client) or "no authentication")):
            raise Problem(404, f"no answer with id {describe(answer_id)} (answer ids are {ID_DIGITS} hexadecimal digits)")
        return json.dumps({"id": answer_id, "erased": True})

    # ------------------------------------------------------------------ internals
    def _checked(self, request: Options, records: Sequence[Any], path: list[str],
                 single: bool) -> tuple[SolverKey, Any, list[dict[str, Any]]]:
        """Solver options, target and validated records; the problems of all of them in one 422."""
        found: list[Problem] = []
        try:
            key, target = self._options(request)
        except Problem as problem:
            found.append(problem)
        try:
            valid = self._validate(records, path, single)
        except Problem as problem:
            found.append(problem)
        if len(found) == 1:
            raise found[0]
        if found:
            raise Problem(422, "; ".join(p.detail for p in found), [e for p in found for e in p.errors])
        return key, target, valid

    def _options(self, request: Options) -> tuple[SolverKey, Any]:
        """The solver-options key and the target class; one 422 listing every bad option."""
        errors: list[dict[str, str]] = []
        config = None
        try:  # the library's one options policy (recourse.options); the envelope only checked JSON types
            config = self.engine.resolve(RequestOptions(
                max_changes=request.max_changes, density=request.density, alternatives=request.alternatives,
                cost_weights=request.cost_weights, fixed=request.fixed, limits=request.limits,
                min_probability=request.min_probability, robust=request.robust)).config
        except OptionsError as exc:
            errors += [field_error(e.field.split(".", 1), e.message) for e in exc.errors]
        score = None
        try:
            target, score = self._target(request.target)
        except Problem as problem:
            errors += problem.errors
        if errors or config is None:
            raise Problem(422, "invalid solver options", errors)
        key = SolverKey(config.max_changes, config.density, request.alternatives,
                        tuple(sorted(request.cost_weights.items())) if request.cost_weights else None,
                        tuple(dict.fromkeys(request.fixed)) if request.fixed else None,
                        tuple(sorted((k, tuple(v)) for k, v in request.limits.items())) if request.limits else None,
                        config.min_probability, config.robust, score)
        return key, target

    def _target(self, asked: str | int | dict | None) -> tuple[Any, tuple[str, float] | None]:
        """The class to reach: the favourable one, or the engine's class equal to ``asked`` in value and
        JSON type (the bundle decides whether classes are strings or integers: 1 is not "1"); for a
        bundle that decides a score, a threshold object is also taken: (the object as logged, its key)."""
        if isinstance(asked, dict):
            score_target = self.engine.schema.score_target
            if score_target is None:
                raise Problem(422, "unknown target class", [field_error(["target"], "expected one class of the model, a "
                              "string or an integer as in GET /v1/models (this bundle decides classes, not a score: "
                              "at_least / at_most apply to a bundle that decides a score)")])
            try:
                wanted = requested_target(asked, score_target)
            except OptionsError as exc:
                raise Problem(422, "invalid target", [field_error(e.field.split(".", 1), e.message) for e in exc.errors]) from None
            side = "at_least" if wanted.at_least is not None else "at_most"
            return {side: wanted.threshold}, (side, wanted.threshold)
        return self._class(asked), None

    def _class(self, asked: str | int | None) -> Any:
        """The engine's class equal to ``asked`` (None: the favourable one)."""
        classes = self.engine.classes
        if asked is None:
            schema_target = self.engine.schema.target
            favourable = schema_target.favourable if schema_target else classes[-1]
            return next((c for c in classes if str(c) == str(favourable)), favourable)
        for c in classes:
            if isinstance(c, str) == isinstance(asked, str) and str(c) == str(asked):
                return c
        listed = ", ".join(json.dumps(to_jsonable(c)) for c in classes)
        raise Problem(422, "unknown target class", [field_error(["target"], f"unknown class {describe(asked)}; the classes are {listed}")])

    def _validate(self, records: Sequence[Any], path: list[str], single: bool) -> list[dict[str, Any]]:
        schema = self.engine.schema
        try:
            if single:
                return [schema.validate_record(records[0])]
            return schema.validate_records(list(records))
        except RecordValidationError as exc:
            errors = []
            for e in exc.errors:
                parts: list[str | int] = list(path)
                if single:
                    parts += [] if e.field == "record" else [e.field]
                else:
                    head, _, rest = e.field.partition(".")
                    parts += [int(head)] if head.isdigit() else [head]
                    parts += [rest] if rest else []
                errors.append(field_error(parts, e.message))
            raise Problem(422, "the applicant does not fit the model's feature schema", errors) from None

    def _solve(self, key: SolverKey, entries: list[Entry]) -> list[Entry]:
        """One engine call for entries sharing solver options; fills each entry's answer.

        Runs on the batcher's solver thread; the batcher's finishing thread then logs the
        micro-batch in one transaction (:meth:`_log`, group commit: one fsync per micro-batch)
        while the solver already works on the next one.
        """
        self._seed()
        if key.score is not None:  # a score threshold of the request's own: one engine for the whole group
            engine = self.engine.for_score(self.engine.schema.score_target.with_threshold(**dict([key.score])))
            results = engine.explain([e.request["applicant"] for e in entries], **key.explain_options())
        else:
            results = self.engine.explain([e.request["applicant"] for e in entries],
                                          target=[e.request["target"] for e in entries], **key.explain_options())
        for entry, res in zip(entries, results):
            entry.answer = {"model": self.model_ref, **res.to_dict()}
        return entries

    def _seed(self) -> None:
        """Seed the engine's random draws (only black-box estimates draw any) with the configured seed.

        The CPU generator directly, and the engine's CUDA device when it has one:
        ``torch.manual_seed`` would also queue a lazy seeding of every CUDA device, which costs
        a stack capture per call where CUDA is not initialised.
        """
        torch.random.default_generator.manual_seed(self.config.seed)
        device = torch.device(self.engine.device)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(self.config.seed)

    def _log(self, entries: list[Entry]) -> list[dict[str, Any]]:
        items = self.log.record(self.bundle.hash, self.config.seed, entries)
        for item in items:
            if "status" in item["answer"]:
                self.telemetry.outcome(item["answer"]["status"])
        return items

    def _wait(self, future: Any, gone: Gone | None = None, deadline: float | None = None) -> list[dict[str, Any]]:
        """The logged answers of a batcher job, or 503 after ``request_timeout`` seconds (the job is
        then abandoned: dropped if not yet solved, not logged if solved); ``gone()``: whether the
        client has hung up (checked every ``POLL_SECONDS``; the job is abandoned too)."""
        deadline = time.monotonic() + self.config.request_timeout if deadline is None else deadline
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.batcher.abandon(future)
                raise Problem(503, f"no answer within {self.config.request_timeout:g} s; try again",
                              headers={"Retry-After": "1"})
            try:
                return future.result(timeout=min(remaining, POLL_SECONDS))
            except FutureTimeout:
                if gone is not None and gone():
                    self.batcher.abandon(future)
                    raise Problem(503, "the client closed the connection; the request was dropped") from None

    def _answer(self, kind: str, key: SolverKey, target: Any, records: list[dict[str, Any]],
                owner: str | None = None, gone: Gone | None = None) -> list[dict[str, Any]]:
        """Logged answers for records: earlier answers to the same request reused, the rest solved."""
        logged = key.request()  # the order answers were always logged in: m, density, target, then the rest
        request = {"max_changes": logged.pop("max_changes"), "density": logged.pop("density"), "target": target, **logged}
        entries = [Entry(kind, {"applicant": r, **request}, {}, owner) for r in records]
        known = self.log.known_answers(self.bundle.hash, entries)
        items: list[dict[str, Any] | None] = [None] * len(entries)
        todo = [i for i, e in enumerate(entries) if e.digest not in known]
        rest = [i for i, e in enumerate(entries) if e.digest in known]
        for i in rest:  # reused: logged again (new id and time) in the finisher's next transaction
            entries[i].answer = json.loads(known[entries[i].digest])
        waits = []
        if todo:
            try:
                waits.append((todo, self.batcher.submit(key, [entries[i] for i in todo])))
            except Overloaded as exc:
                raise Problem(503, f"the service is busy ({exc}); try again shortly", headers={"Retry-After": "1"}) from None
        if rest:
            waits.append((rest, self.batcher.submit_solved([entries[i] for i in rest])))
        deadline = time.monotonic() + self.config.request_timeout
        try:
            for positions, future in waits:
                for i, item in zip(positions, self._wait(future, gone, deadline)):
                    items[i] = item
        except Problem:
            for _, future in waits:  # the other part of this request is dropped as well
                self.batcher.abandon(future)
            raise
        return items  # type: ignore[return-value]
