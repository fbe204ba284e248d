r"""Tree ensembles as plain arrays: scikit-learn's RandomForest, GradientBoosting and
HistGradientBoosting classifiers (and XGBoost's and LightGBM's, :mod:`recourse.boosters`)
exported to tensors and evaluated in batched torch.

Every tree is stored as padded arrays over its nodes (``feature``, ``threshold``, ``left``,
``right``, leaf ``value``); all trees of all rows are traversed together, one level per step:

.. math::  n \leftarrow \begin{cases} \text{left}[n] & x_{\text{feature}[n]} \le \text{threshold}[n] \\
                                      \text{right}[n] & \text{otherwise} \end{cases}
           \quad\text{until } n \text{ is a leaf.}

Combination by kind:

* ``forest``: :math:`p = \frac1T \sum_t v_t(x)` (leaf class frequencies) → output ``"proba"``;
* ``boosting``: raw score :math:`F_k(x) = F_{0,k} + \eta \sum_t v_{t,k}(x)` (η = 1 for
  HistGradientBoosting, whose leaves already include it) → binary: one logit; multi-class:
  softmax logits.

Thresholds are kept bit-exact as float64 (stored as int64 bit patterns, so casting the module to
float32 cannot move a split); decision trees compare ``float32(x)`` as scikit-learn does.
Saved as JSON + safetensors: loading runs no code (no pickle).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .models import get_model_kind, model_kinds, register_model_kind

Kind = Literal["forest", "boosting"]
FORMAT = "recourse-trees/1"


class TreeEnsemble(nn.Module):
    """A fitted tree ensemble on (B, D) inputs; ``forward`` gives probabilities (forest) or raw scores."""

    def __init__(self, kind: Kind, feature: Tensor, threshold: Tensor, left: Tensor, right: Tensor, value: Tensor,
                 init: Tensor, scale: float, depth: int, n_features: int, float32_inputs: bool):
        super().__init__()
        if kind not in ("forest", "boosting"):
            raise ValueError(f"kind must be 'forest' or 'boosting', got {kind!r}")
        self.kind, self.scale, self.depth = kind, float(scale), int(depth)
        self.n_features, self.float32_inputs = int(n_features), bool(float32_inputs)
        self.register_buffer("feature", feature.long())
        self.register_buffer("threshold_bits", threshold.double().contiguous().view(torch.int64))
        self.register_buffer("left", left.long())
        self.register_buffer("right", right.long())
        self.register_buffer("value", value.double())
        self.register_buffer("init", init.double())
        self.input_map: dict[str, Tensor] | None = None
        self._build_step_tables()

    # ------------------------------------------------------------------ an input map (raw pipelines)
    @property
    def in_features(self) -> int:
        """Width of the inputs: ``n_features``, or the input map's when the splits read T(x)."""
        if self.input_map is None:
            return self.n_features
        first = self.input_map.get("w1", self.input_map["w2"])
        return int(first.shape[1])

    def set_input_map(self, mapping: Any) -> None:
        """Evaluate the splits on T(x) = W2 ReLU(W1 x + b1) + b2 (or W2 x + b2), in float64: a
        pipeline's preprocessing (:class:`recourse.pipelines.InputMap`) in front of the trees."""
        tensors = {"w2": mapping.w2, "b2": mapping.b2}
        if mapping.w1 is not None:
            tensors.update(w1=mapping.w1, b1=mapping.b1)
        self.set_input_map_tensors({k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in tensors.items()})

    def set_input_map_tensors(self, tensors: dict[str, Tensor]) -> None:
        """:meth:`set_input_map` from the tensors ``w2``, ``b2`` (and ``w1``, ``b1`` with a hidden layer)."""
        if int(tensors["w2"].shape[0]) != self.n_features:
            raise ValueError(f"input map: gives {int(tensors['w2'].shape[0])} features, the trees read {self.n_features}")
        for name, value in tensors.items():  # int64 bit patterns, like the thresholds: a dtype cast cannot touch them
            self.register_buffer(f"map_{name}_bits", value.double().contiguous().view(torch.int64))
        self.input_map = {name: self._map_tensor(name) for name in tensors}

    def widen_thresholds(self, absolute: Tensor, relative: float) -> None:
        r"""Move every split on feature f up by ``absolute[f]`` + ``relative``·max(1, |t|) (down when
        both are negative: for a model whose own rule is x < c, a value at the split goes right).

        With an input map, T(x) is computed in another order than the pipeline's own transform,
        from inputs that may be float32, and can land just above a threshold that equals a
        training value (HistGradientBoosting splits at data values); the slack covers that
        rounding.  A value within twice the slack of a split is on no sure side of it (a grid
        value at the midpoint of two training values is): :meth:`ambiguous` names such rows, and
        the engine's gate refuses them (the caller also checks the result against the model's
        own predictions)."""
        threshold = self.threshold_bits.view(torch.float64)
        slack = absolute.double()[self.feature.clamp_min(0)] + relative * threshold.abs().clamp_min(1.0)
        widened = threshold + slack
        self.threshold_bits = torch.where(self.feature >= 0, widened, threshold).contiguous().view(torch.int64)
        slack = torch.where(self.feature >= 0, slack, torch.zeros_like(slack))
        self.register_buffer("split_slack_bits", slack.contiguous().view(torch.int64))  # bits: a dtype cast cannot touch it
        self._build_step_tables()

    def mark_midpoints(self, train: Tensor) -> None:
        """Mark the splits (read through the input map) whose threshold is no training row's split
        input: a midpoint between two training values (scikit-learn's trees split there), which a
        value on a grid can hit exactly, where the model's own arithmetic and this one may send it
        apart.  A threshold at a training value (XGBoost, LightGBM) is computed by the model from
        the same transform as any row's value, and the slack gives its side exactly."""
        bits = getattr(self, "split_slack_bits", None)
        if bits is None:
            raise ValueError("mark_midpoints needs the widened thresholds (widen_thresholds first)")
        slack = bits.view(torch.float64)
        inputs = self.split_inputs(train)  # (N, n_features)
        original = self.threshold_bits.view(torch.float64) - slack
        midpoint = torch.zeros_like(self.feature, dtype=torch.bool)
        inner = (self.feature >= 0).nonzero(as_tuple=True)
        for f in torch.unique(self.feature[inner]).tolist():
            at = self.feature == f  # f ≥ 0: an inner node's feature
            values = torch.unique(inputs[:, f])
            t = original[at]
            gap = (values[None, :] - t[:, None]).abs().amin(1)
            midpoint[at] = gap > 2.0 * slack[at].abs()
        self.register_buffer("split_midpoint", midpoint)

    def ambiguous(self, x: Tensor, origin: Tensor | None = None) -> Tensor:
        """(B,) bool: rows with a split input that moved from the ``origin`` row's (all of them
        without one) onto a midpoint split (:meth:`mark_midpoints`, within twice the slack of
        :meth:`widen_thresholds`), where this evaluation and the model's own may send them apart;
        all False for a model read without an input map or without marked midpoints."""
        bits = getattr(self, "split_slack_bits", None)
        midpoint = getattr(self, "split_midpoint", None)
        if bits is None or midpoint is None or self.input_map is None or not bool(midpoint.any()):
            return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        slack = bits.view(torch.float64)[midpoint]
        feature = self.feature[midpoint]
        original = self.threshold_bits.view(torch.float64)[midpoint] - slack
        values = self.split_inputs(x)[:, feature]
        near = (values - original).abs() <= 2.0 * slack.abs()
        if origin is not None:
            near &= values != self.split_inputs(origin)[:, feature]
        return near.any(1)

    def with_affine_output(self, a: float, b: float) -> "TreeEnsemble":
        r"""A copy whose boosting output is :math:`a\,F(x) + b` (init :math:`aF_0 + b`, scale :math:`a\eta`):
        a score model's trees read as a binary logit (:mod:`recourse.scores`)."""
        if self.kind != "boosting" or self.value.shape[-1] != 1:
            raise ValueError("an affine output needs a boosting ensemble with one output")
        other = copy.deepcopy(self)
        other.scale = float(a) * self.scale
        other.init = self.init * float(a) + float(b)
        return other

    def _map_tensor(self, name: str) -> Tensor:
        return getattr(self, f"map_{name}_bits").view(torch.float64)

    def _mapped(self, x: Tensor) -> Tensor:
        m = {name: self._map_tensor(name) for name in self.input_map or {}}
        if not m:
            return x
        hidden = torch.relu(x @ m["w1"].T + m["b1"]) if "w1" in m else x
        return hidden @ m["w2"].T + m["b2"]

    def _build_step_tables(self) -> None:
        r"""Flat traversal tables (not saved; rebuilt from the node arrays).

        Over the flat node index n = tree · M + node: ``_step_feature`` (a leaf reads feature 0),
        ``_step_threshold_bits`` (a leaf: +∞, so x ≤ threshold always holds) and ``_children``
        (2n: left child, 2n + 1: right child; a leaf points to itself twice).  One traversal
        step is then :math:`n \leftarrow \text{children}[2n + (x_{f[n]} > t[n])]` for every row
        and tree at once, with no leaf test: a row that reached its leaf stays there.
        """
        t, m = self.feature.shape
        flat = torch.arange(t * m, device=self.feature.device).reshape(t, m)
        offset = (torch.arange(t, device=self.feature.device) * m)[:, None]
        leaf = self.feature < 0
        threshold = self.threshold_bits.view(torch.float64)
        step_threshold = torch.where(leaf, torch.full_like(threshold, float("inf")), threshold)
        left = torch.where(leaf, flat, self.left + offset)
        right = torch.where(leaf, flat, self.right + offset)
        self.register_buffer("_step_feature", self.feature.clamp_min(0).reshape(-1), persistent=False)
        self.register_buffer("_step_threshold_bits", step_threshold.contiguous().view(torch.int64).reshape(-1),
                             persistent=False)
        self.register_buffer("_children", torch.stack([left, right], -1).reshape(-1), persistent=False)
        self.register_buffer("_is_leaf", leaf.reshape(-1), persistent=False)

    @property
    def n_trees(self) -> int:
        return int(self.feature.shape[0])

    @property
    def output(self) -> str:
        """The :class:`~recourse.models.TorchClassifier` output kind of ``forward``."""
        if self.kind == "forest":
            return "proba"
        return "logit" if self.value.shape[-1] == 1 else "logits"

    def transform(self, x: Tensor) -> Tensor:
        """T(x) in float64: the input map's output (x itself without one)."""
        return self._mapped(x.detach().double())

    def split_inputs(self, x: Tensor) -> Tensor:
        """(B, n_features) the values the splits compare: T(x) with an input map, x otherwise, in
        float64 (rounded through float32 first where the model compares float32 inputs)."""
        xs = self._mapped(x.detach().double())
        return xs.float().double() if self.float32_inputs else xs

    def splits(self) -> tuple[Tensor, Tensor]:
        """The internal nodes of every tree: the feature each reads (S,) and its threshold (S,),
        float64; a row goes right at a node when its :meth:`split_inputs` value exceeds the threshold."""
        inner = self.feature >= 0
        return self.feature[inner], self.threshold_bits.view(torch.float64)[inner]

    def split_outcomes(self, x: Tensor) -> Tensor:
        """(B, S) bool: which way every row goes at every internal node (True: right), the order of
        :meth:`splits`.  Rows with equal outcomes reach the same leaves in every tree."""
        feature, threshold = self.splits()
        return self.split_inputs(x)[:, feature] > threshold

    def leaves(self, x: Tensor) -> Tensor:
        """(B, T) flat node index (tree · M + node) of the leaf each row reaches in each tree."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected inputs of shape (B, {self.in_features}), got {tuple(x.shape)}")
        xs = self.split_inputs(x)
        b, d = xs.shape
        t, m = self.feature.shape
        feature, children, is_leaf = self._step_feature, self._children, self._is_leaf
        threshold = self._step_threshold_bits.view(torch.float64)
        x_flat = xs.reshape(-1)
        node = (torch.arange(t, device=x.device) * m).repeat(b)  # (B·T,) row-major: row r, tree k at r·T + k
        out = node.clone()
        pos = torch.arange(b * t, device=x.device)
        row_base = torch.arange(b, device=x.device).repeat_interleave(t) * d
        for step in range(self.depth):
            if step % 4 == 3:  # every 4 levels, (row, tree) pairs that reached their leaf leave
                done = is_leaf.take(node)
                if bool(done.any()):
                    out.index_copy_(0, pos[done], node[done])
                    active = ~done
                    node, pos, row_base = node[active], pos[active], row_base[active]
                    if node.numel() == 0:
                        break
            right = x_flat.take(row_base + feature.take(node)) > threshold.take(node)
            node = children.take(node * 2 + right)
        out.index_copy_(0, pos, node)
        return out.view(b, t)

    def forward(self, x: Tensor) -> Tensor:
        node = self.leaves(x)
        v = self.value.reshape(-1, self.value.shape[-1])[node]  # (B, T, K)
        if self.kind == "forest":
            out = v.mean(1)
        else:
            out = self.init + self.scale * v.sum(1)
            out = out[:, 0] if out.shape[1] == 1 else out
        return out.to(x.dtype if x.is_floating_point() else torch.float64)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        config = {"format": FORMAT, "kind": self.kind, "scale": self.scale, "depth": self.depth,
                  "n_features": self.n_features, "float32_inputs": self.float32_inputs}
        if self.input_map is not None:
            config["input_map"] = {"in_features": self.in_features, "hidden": "w1" in self.input_map}
        return config

    def tensors(self) -> dict[str, Tensor]:
        out = {"feature": self.feature.cpu(), "threshold": self.threshold_bits.view(torch.float64).cpu(),
               "left": self.left.cpu(), "right": self.right.cpu(), "value": self.value.cpu(), "init": self.init.cpu(),
               **{f"map_{name}": self._map_tensor(name).cpu() for name in self.input_map or {}}}
        if getattr(self, "split_slack_bits", None) is not None:
            out["split_slack"] = self.split_slack_bits.view(torch.float64).cpu()
        if getattr(self, "split_midpoint", None) is not None:
            out["split_midpoint"] = self.split_midpoint.to(torch.uint8).cpu()
        return out

    def save(self, directory: str | Path, stem: str = "trees") -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{stem}.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in self.tensors().items()}, str(directory / f"{stem}.safetensors"))
        return [directory / f"{stem}.json", directory / f"{stem}.safetensors"]

    @classmethod
    def load(cls, directory: str | Path, stem: str = "trees") -> "TreeEnsemble":
        directory = Path(directory)
        config = json.loads((directory / f"{stem}.json").read_text())
        if config.get("format") != FORMAT:
            raise ValueError(f"{directory / stem}.json: unsupported tree format {config.get('format')!r}")
        t = load_file(str(directory / f"{stem}.safetensors"))
        model = cls(config["kind"], t["feature"], t["threshold"], t["left"], t["right"], t["value"], t["init"],
                    config["scale"], config["depth"], config["n_features"], config["float32_inputs"])
        if "input_map" in config:
            names = ("w1", "b1", "w2", "b2") if config["input_map"].get("hidden") else ("w2", "b2")
            missing = [n for n in names if f"map_{n}" not in t]
            if missing:
                raise ValueError(f"{directory / stem}.safetensors: the input map lacks {', '.join(missing)}")
            model.set_input_map_tensors({n: t[f"map_{n}"] for n in names})
        if "split_slack" in t:
            if tuple(t["split_slack"].shape) != tuple(model.feature.shape):
                raise ValueError(f"{directory / stem}.safetensors: split_slack does not fit the trees")
            model.register_buffer("split_slack_bits", t["split_slack"].double().contiguous().view(torch.int64))
        if "split_midpoint" in t:
            if tuple(t["split_midpoint"].shape) != tuple(model.feature.shape):
                raise ValueError(f"{directory / stem}.safetensors: split_midpoint does not fit the trees")
            model.register_buffer("split_midpoint", t["split_midpoint"].bool())
        model.validate()
        return model

    def validate(self) -> None:
        """Reject arrays that would index out of range (a tampered or truncated file)."""
        m = self.feature.shape[1]
        inner = self.feature >= 0
        if bool((self.feature >= self.n_features).any()):
            raise ValueError("tree arrays: a split feature is out of range")
        if self.input_map is not None:
            maps = self.input_map
            hidden = int(maps["w1"].shape[0]) if "w1" in maps else self.in_features
            shapes_ok = (maps["w2"].ndim == 2 and tuple(maps["w2"].shape) == (self.n_features, hidden)
                         and tuple(maps["b2"].shape) == (self.n_features,)
                         and ("w1" not in maps or (maps["w1"].ndim == 2 and tuple(maps["b1"].shape) == (hidden,))))
            if not shapes_ok:
                raise ValueError("tree arrays: the input map's shapes do not fit together")
        for name in ("left", "right"):
            child = getattr(self, name)[inner]
            if bool(((child < 0) | (child >= m)).any()):
                raise ValueError(f"tree arrays: a '{name}' child index is out of range")


# ---------------------------------------------------------------------- export from scikit-learn
def _pad(trees: list[dict[str, np.ndarray]], k: int) -> dict[str, Tensor]:
    """Stack per-tree node arrays into (T, M[, K]) tensors, padding with leaves."""
    m = max(len(t["feature"]) for t in trees)
    out = {
        "feature": np.full((len(trees), m), -1, dtype=np.int64),
        "threshold": np.zeros((len(trees), m)),
        "left": np.zeros((len(trees), m), dtype=np.int64),
        "right": np.zeros((len(trees), m), dtype=np.int64),
        "value": np.zeros((len(trees), m, k)),
    }
    for i, t in enumerate(trees):
        n = len(t["feature"])
        for key in out:
            out[key][i, :n] = t[key]
    return {key: torch.as_tensor(v) for key, v in out.items()}


def _depth(trees: list[dict[str, np.ndarray]]) -> int:
    """Longest root-to-leaf path over all trees (number of traversal steps)."""
    best = 0
    for t in trees:
        depth = np.zeros(len(t["feature"]), dtype=np.int64)
        for n in range(len(t["feature"])):  # parents precede children in sklearn's node order
            if t["feature"][n] >= 0:
                depth[t["left"][n]] = depth[t["right"][n]] = depth[n] + 1
        best = max(best, int(depth.max()))
    return best


def _sk_tree(tree: Any, leaf_value: np.ndarray) -> dict[str, np.ndarray]:
    t = tree.tree_
    leaf = t.children_left < 0
    return {"feature": np.where(leaf, -1, t.feature), "threshold": np.where(leaf, 0.0, t.threshold),
            "left": np.where(leaf, 0, t.children_left), "right": np.where(leaf, 0, t.children_right), "value": leaf_value}


def from_sklearn_trees(estimator: Any) -> TreeEnsemble:
    """Export a fitted RandomForest / ExtraTrees, GradientBoosting or HistGradientBoosting classifier."""
    from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier, HistGradientBoostingClassifier,
                                  RandomForestClassifier)

    n_features = int(estimator.n_features_in_)
    if isinstance(estimator, (RandomForestClassifier, ExtraTreesClassifier)):
        trees = []
        for tree in estimator.estimators_:
            v = tree.tree_.value[:, 0, :]
            trees.append(_sk_tree(tree, v / np.maximum(v.sum(1, keepdims=True), 1e-300)))
        k = len(estimator.classes_)
        arrays = _pad(trees, k)
        return TreeEnsemble("forest", **arrays, init=torch.zeros(k, dtype=torch.float64), scale=1.0,
                            depth=_depth(trees), n_features=n_features, float32_inputs=True)
    if isinstance(estimator, GradientBoostingClassifier):
        stages, k = estimator.estimators_.shape
        trees = []
        for s in range(stages):
            for j in range(k):
                tree = estimator.estimators_[s, j]
                v = np.zeros((tree.tree_.node_count, k))
                v[:, j] = tree.tree_.value[:, 0, 0]
                trees.append(_sk_tree(tree, v))
        model = TreeEnsemble("boosting", **_pad(trees, k), init=torch.zeros(k, dtype=torch.float64),
                             scale=estimator.learning_rate, depth=_depth(trees), n_features=n_features, float32_inputs=True)
        _set_init(model, estimator)
        return model
    if isinstance(estimator, HistGradientBoostingClassifier):
        k = len(estimator._predictors[0])
        trees = []
        for iteration in estimator._predictors:
            for j, predictor in enumerate(iteration):
                nodes = predictor.nodes
                if bool(np.any(nodes["is_categorical"])):
                    raise ValueError("HistGradientBoosting with native categorical splits is not supported; one-hot encode instead")
                leaf = nodes["is_leaf"].astype(bool)
                v = np.zeros((len(nodes), k))
                v[:, j] = nodes["value"]
                trees.append({"feature": np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
                              "threshold": np.where(leaf, 0.0, nodes["num_threshold"]),
                              "left": np.where(leaf, 0, nodes["left"]).astype(np.int64),
                              "right": np.where(leaf, 0, nodes["right"]).astype(np.int64), "value": v})
        model = TreeEnsemble("boosting", **_pad(trees, k), init=torch.zeros(k, dtype=torch.float64), scale=1.0,
                             depth=_depth(trees), n_features=n_features, float32_inputs=False)
        _set_init(model, estimator)
        return model
    raise TypeError(f"unsupported tree model {type(estimator).__name__}: RandomForest, ExtraTrees, "
                    "GradientBoosting or HistGradientBoosting classifiers")


def regressor_trees(estimator: Any) -> TreeEnsemble:
    r"""Export a fitted tree-ensemble regressor as one boosting output F(x) = its ``predict`` (XGBoost's and
    LightGBM's through :func:`recourse.boosters.export_booster`, scikit-learn's here):
    RandomForest / ExtraTrees (:math:`\frac1T\sum_t v_t(x)`: scale 1/T), GradientBoosting and
    HistGradientBoosting (losses whose prediction is the raw score).  The export is checked
    against ``predict`` on probe rows (a model with a link function, e.g. a Poisson loss, is refused)."""
    from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingRegressor, HistGradientBoostingRegressor,
                                  RandomForestRegressor)

    from .boosters import export_booster, is_booster_regressor

    n_features = int(estimator.n_features_in_)
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise TypeError("a score model predicts one value; this regressor predicts several")
    if is_booster_regressor(estimator):  # XGBoost / LightGBM, read from their JSON dumps
        model = export_booster(estimator, regression=True)
    elif isinstance(estimator, (RandomForestRegressor, ExtraTreesRegressor)):
        trees = [_sk_tree(tree, tree.tree_.value[:, 0, :1]) for tree in estimator.estimators_]
        model = TreeEnsemble("boosting", **_pad(trees, 1), init=torch.zeros(1, dtype=torch.float64),
                             scale=1.0 / len(trees), depth=_depth(trees), n_features=n_features, float32_inputs=True)
    elif isinstance(estimator, GradientBoostingRegressor):
        trees = [_sk_tree(tree, tree.tree_.value[:, 0, :1]) for tree in estimator.estimators_[:, 0]]
        model = TreeEnsemble("boosting", **_pad(trees, 1), init=torch.zeros(1, dtype=torch.float64),
                             scale=estimator.learning_rate, depth=_depth(trees), n_features=n_features, float32_inputs=True)
        _set_init(model, estimator, estimator.predict)
    elif isinstance(estimator, HistGradientBoostingRegressor):
        if estimator.loss not in ("squared_error", "absolute_error", "quantile"):
            raise TypeError(f"HistGradientBoostingRegressor(loss={estimator.loss!r}) predicts through a link function; "
                            "a score model must predict the score itself (loss squared_error, absolute_error or quantile)")
        trees = []
        for (predictor,) in estimator._predictors:
            nodes = predictor.nodes
            if bool(np.any(nodes["is_categorical"])):
                raise ValueError("HistGradientBoosting with native categorical splits is not supported; one-hot encode instead")
            leaf = nodes["is_leaf"].astype(bool)
            trees.append({"feature": np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
                          "threshold": np.where(leaf, 0.0, nodes["num_threshold"]),
                          "left": np.where(leaf, 0, nodes["left"]).astype(np.int64),
                          "right": np.where(leaf, 0, nodes["right"]).astype(np.int64),
                          "value": np.asarray(nodes["value"], dtype=np.float64)[:, None]})
        model = TreeEnsemble("boosting", **_pad(trees, 1), init=torch.zeros(1, dtype=torch.float64), scale=1.0,
                             depth=_depth(trees), n_features=n_features, float32_inputs=False)
        _set_init(model, estimator, estimator.predict)
    else:
        raise TypeError(f"unsupported tree model {type(estimator).__name__}: RandomForest, ExtraTrees, "
                        "GradientBoosting or HistGradientBoosting regressors")
    probe = np.random.default_rng(1).random((16, n_features))
    with torch.no_grad():
        ours = model(torch.as_tensor(probe, dtype=torch.float64)).numpy().reshape(-1)
    theirs = np.asarray(estimator.predict(probe), dtype=np.float64).reshape(-1)
    tolerance = 1e-5 if is_booster_regressor(estimator) else 1e-9  # XGBoost sums its leaves in float32
    if not np.allclose(ours, theirs, rtol=tolerance, atol=tolerance * max(1.0, float(np.abs(theirs).max()))):
        raise TypeError(f"{type(estimator).__name__}: its prediction is not the trees' raw sum (a loss with a "
                        "link function?); a score model must predict the score itself")
    return model


def is_tree_regressor(model: Any) -> bool:
    """A fitted tree-ensemble regressor (:func:`regressor_trees`): scikit-learn's, ``XGBRegressor``
    or ``LGBMRegressor``."""
    from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingRegressor, HistGradientBoostingRegressor,
                                  RandomForestRegressor)

    from .boosters import is_booster_regressor

    return is_booster_regressor(model) or isinstance(model, (RandomForestRegressor, ExtraTreesRegressor,
                                                             GradientBoostingRegressor, HistGradientBoostingRegressor))


def _set_init(model: TreeEnsemble, estimator: Any, raw_score: Any = None) -> None:
    """Initial raw score F₀ = decision_function(x) − η Σ trees(x), checked constant over probe rows
    (``raw_score``: the estimator's raw output instead of ``decision_function``)."""
    rng = np.random.default_rng(0)
    probe = rng.random((8, model.n_features))
    raw = np.asarray((raw_score or estimator.decision_function)(probe), dtype=np.float64).reshape(8, -1)
    with torch.no_grad():
        trees = model(torch.as_tensor(probe, dtype=torch.float64)).reshape(8, -1).numpy()
    init = raw - trees
    if not np.allclose(init, init[0], atol=1e-8):
        raise ValueError("the boosting model's initial estimate is not constant (a custom init estimator); not supported")
    model.init = torch.as_tensor(init[0], dtype=torch.float64)


def export_trees(estimator: Any) -> TreeEnsemble:
    """Export any supported tree ensemble: scikit-learn's (:func:`from_sklearn_trees`), XGBoost's or
    LightGBM's (:mod:`recourse.boosters`, read from their own JSON model dumps)."""
    from .boosters import export_booster, is_booster

    return export_booster(estimator) if is_booster(estimator) else from_sklearn_trees(estimator)


def tree_classes(estimator: Any) -> list[Any]:
    """The class labels of an exported ensemble's columns (0..C−1 for a bare XGBoost/LightGBM Booster)."""
    from .boosters import booster_classes, is_booster

    return booster_classes(estimator) if is_booster(estimator) else list(estimator.classes_)


def tree_classifier(estimator: Any) -> Any:
    """A :class:`~recourse.models.TorchClassifier` that evaluates the exported ensemble exactly."""
    from .models import TorchClassifier

    module = export_trees(estimator)
    return TorchClassifier(module, output=module.output, classes=tree_classes(estimator), n_features=module.n_features)


@register_model_kind("gbm", differentiable=False, about="GradientBoosting, 200 trees of depth 3")
def _train_gbm(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(n_estimators=200, max_depth=3, learning_rate=0.1, random_state=seed).fit(x, y)


@register_model_kind("hgb", differentiable=False, about="HistGradientBoosting, 200 iterations")
def _train_hgb(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed).fit(x, y)


@register_model_kind("forest", differentiable=False, about="RandomForest, 200 trees, leaves of at least 2 rows")
def _train_forest(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=1).fit(x, y)


TREE_MODELS = tuple(name for name in model_kinds() if not get_model_kind(name).differentiable)
"""The registered model kinds that are tree ensembles (trained estimators, exported exactly)."""


def train_tree_model(kind: str, x: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
    """Fit the registered tree-ensemble model kind ``kind`` (``gbm``, ``hgb``, ``forest``, see
    :func:`recourse.models.model_kinds`) on scaled rows."""
    if kind not in TREE_MODELS:
        raise ValueError(f"unknown tree model {kind!r}; choose one of {', '.join(TREE_MODELS)}")
    return get_model_kind(kind).train(x, y, seed=seed)


def is_tree_model(model: Any) -> bool:
    """A fitted tree ensemble for :func:`export_trees`: a scikit-learn tree ensemble classifier, or any
    XGBoost or LightGBM model (whose export refuses objectives that are not classification)."""
    from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier, HistGradientBoostingClassifier,
                                  RandomForestClassifier)

    from .boosters import is_booster

    return is_booster(model) or isinstance(model, (RandomForestClassifier, ExtraTreesClassifier,
                                                   GradientBoostingClassifier, HistGradientBoostingClassifier))
