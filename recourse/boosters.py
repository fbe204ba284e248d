r"""XGBoost and LightGBM classifiers exported to :class:`~recourse.trees.TreeEnsemble` arrays.

Each booster is read from its own JSON model dump (no pickle, no private attributes) and becomes a
``"boosting"`` ensemble: raw score :math:`F_k(x) = F_{0,k} + s\sum_t v_{t,k}(x)`, one logit for two
classes, softmax logits for more.  Everything built on tree ensembles (bundles saved as JSON +
safetensors, the verifier, distillation, the input map of raw pipelines) then works unchanged.

**XGBoost** (``XGBClassifier`` or ``Booster``; ``save_raw("json")``): the nodes keep XGBoost's own
numbering (``left_children``, ``right_children``, ``split_indices``, ``split_conditions``), so a
leaf's node id is the one ``predict(pred_leaf=True)`` reports.  XGBoost sends ``x < c`` left,
comparing float32 values; that is ``x ≤ c⁻`` with c⁻ the largest float32 below c, on inputs
rounded to float32 (``float32_inputs``).  A leaf's value is its ``split_conditions`` entry (the
learning rate is already in it); ``tree_info`` names the class of each tree.  Objectives:
``binary:logistic``, ``multi:softprob``, ``multi:softmax``; the ``gbtree`` booster only (not
``dart`` or ``gblinear``), numeric splits only.

**LightGBM** (``LGBMClassifier`` or ``Booster``; ``dump_model()``): LightGBM sends ``x ≤ t`` left
in float64, as stored.  An inner node keeps its ``split_index`` as node id and a leaf of a tree
with L leaves becomes node ``L − 1 + leaf_index`` (:func:`lightgbm_leaf_index` maps back to what
``predict(pred_leaf=True)`` reports).  Objectives: ``binary`` (with its ``sigmoid`` factor folded
into the scale) and ``multiclass`` (softmax; not ``multiclassova``); the tree ``i`` scores class
``i mod num_tree_per_iteration``; random-forest mode (``average_output``) averages.  Numeric
splits only (categorical ``==`` splits are refused: one-hot encode instead), no linear trees.

The initial score F₀ is calibrated from the library's own raw output (``output_margin`` /
``raw_score``) on probe rows, as for scikit-learn's boosting, and checked constant.

**Missing values.**  The engine's inputs never hold NaN (every feature has a value in the
schema's range), so the default directions of missing values are not needed and not exported.
Two cases make a *present* value "missing" and are checked: LightGBM's ``zero_as_missing``
(``missing_type`` "Zero": a split whose default direction disagrees with where 0 falls is
refused) and XGBoost fed a scipy sparse matrix, which treats every absent entry (a zero) as
missing (:func:`xgboost_zero_conflicts`; :mod:`recourse.pipelines` refuses such a pipeline).

**Classes.**  ``XGBClassifier.classes_`` / ``LGBMClassifier.classes_`` label the columns.  XGBoost
trains on class indices 0..C−1 (train on the index of each label in the schema's class order).
A bare ``Booster`` has no labels: its columns are 0..C−1 and a bundle labels them with the
schema's target classes in order.

xgboost and lightgbm are optional (the ``boosters`` extra) and imported only when a model of
theirs is handed over; a model object of theirs can exist only once its package is imported.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import torch

from .trees import TreeEnsemble

XGBOOST_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax")
LIGHTGBM_OBJECTIVES = ("binary", "multiclass")
XGBOOST_REGRESSION = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:quantileerror")
LIGHTGBM_REGRESSION = ("regression", "regression_l1", "huber", "fair", "quantile")
"""Regression objectives whose raw score is the prediction itself (no link function): score models."""
INIT_TOLERANCE = {"xgboost": 1e-4, "lightgbm": 1e-8}
"""How far the calibrated initial score may vary over the probe rows (per 100 trees and unit of raw
score): XGBoost sums its leaves in float32 (the exported sum is float64), LightGBM in float64."""


def _library(model: Any) -> str | None:
    """``"xgboost"`` or ``"lightgbm"`` when ``model`` is one of their models, else None (no import)."""
    for name in ("xgboost", "lightgbm"):
        module = sys.modules.get(name)
        if module is None:
            continue
        kinds = (module.Booster, module.XGBModel) if name == "xgboost" else (module.Booster, module.LGBMModel)
        if isinstance(model, kinds):
            return name
    return None


def is_booster(model: Any) -> bool:
    """An XGBoost or LightGBM model (sklearn wrapper or bare ``Booster``), of any objective; export
    refuses those that are not classifiers."""
    return _library(model) is not None


def strict_splits(model: Any) -> bool:
    """Whether the model's own rule is ``x < c`` (XGBoost): a value equal to a split goes right."""
    return _library(model) == "xgboost"


def _name(model: Any) -> str:
    return f"{type(model).__module__.split('.')[0]}.{type(model).__name__}"


# ---------------------------------------------------------------------- XGBoost
def _xgb_booster(model: Any) -> Any:
    """The ``Booster`` of an XGBoost model, cut to ``best_iteration`` when early stopping set one
    (the sklearn wrapper predicts with those trees only)."""
    import xgboost

    if isinstance(model, xgboost.Booster):
        return model
    booster = model.get_booster()
    best = getattr(model, "best_iteration", None) if "best_iteration" in booster.attributes() else None
    return booster[: best + 1] if best is not None and best + 1 < booster.num_boosted_rounds() else booster


def _xgb_json(model: Any) -> dict[str, Any]:
    return json.loads(bytes(_xgb_booster(model).save_raw("json")))


def _xgb_learner(model: Any, regression: bool = False) -> tuple[dict[str, Any], int, int]:
    """(the learner JSON, number of classes K (2 for binary; 2 for a score model, one output),
    number of features), checked."""
    learner = _xgb_json(model)["learner"]
    objective = learner["objective"]["name"]
    allowed = XGBOOST_REGRESSION if regression else XGBOOST_OBJECTIVES
    if objective not in allowed:
        raise TypeError(f"unsupported XGBoost model {_name(model)} with objective {objective!r}: "
                        f"{'a score model' if regression else 'a classifier'} ({', '.join(allowed)}) is needed")
    booster = learner["gradient_booster"]
    if booster.get("name") != "gbtree":
        raise TypeError(f"unsupported XGBoost model {_name(model)} with booster {booster.get('name')!r}: only 'gbtree'")
    params = learner["learner_model_param"]
    if int(params.get("num_target", 1)) > 1:
        raise TypeError(f"unsupported XGBoost model {_name(model)}: several targets")
    classes = max(2, int(params.get("num_class", 0)))
    return learner, classes, int(params["num_feature"])


def _xgb_tree(tree: dict[str, Any], model: Any) -> dict[str, np.ndarray]:
    if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
        raise TypeError(f"unsupported XGBoost model {_name(model)}: vector leaves (multi_strategy='multi_output_tree')")
    if any(int(s) != 0 for s in tree.get("split_type", [])):
        raise ValueError(f"{_name(model)}: categorical splits are not supported; one-hot encode instead")
    left = np.asarray(tree["left_children"], dtype=np.int64)
    right = np.asarray(tree["right_children"], dtype=np.int64)
    condition = np.asarray(tree["split_conditions"], dtype=np.float32)
    leaf = left < 0
    below = np.nextafter(condition, np.float32(-np.inf))  # x < c  ⟺  x ≤ c⁻ for float32 x
    return {"feature": np.where(leaf, -1, np.asarray(tree["split_indices"], dtype=np.int64)),
            "threshold": np.where(leaf, 0.0, below.astype(np.float64)),
            "left": np.where(leaf, 0, left), "right": np.where(leaf, 0, right),
            "leaf": np.where(leaf, condition.astype(np.float64), 0.0),
            "default_left": np.asarray(tree["default_left"], dtype=bool)}


def from_xgboost(model: Any, regression: bool = False) -> TreeEnsemble:
    """Export an ``XGBClassifier`` or a classification ``Booster`` (see the module docstring); with
    ``regression``, an ``XGBRegressor`` whose raw score is its prediction (one output)."""
    learner, k, n_features = _xgb_learner(model, regression)
    forest = learner["gradient_booster"]["model"]
    groups = [int(g) for g in forest["tree_info"]]
    width = 1 if k == 2 else k
    trees = []
    for tree, group in zip(forest["trees"], groups):
        t = _xgb_tree(tree, model)
        value = np.zeros((len(t["leaf"]), width))
        value[:, group if width > 1 else 0] = t["leaf"]
        trees.append({**{key: t[key] for key in ("feature", "threshold", "left", "right")}, "value": value})
    ensemble = _ensemble(trees, width, scale=1.0, n_features=n_features, float32_inputs=True)

    def margin(probe: np.ndarray) -> np.ndarray:
        import xgboost

        booster = _xgb_booster(model)
        return booster.predict(xgboost.DMatrix(probe, feature_names=booster.feature_names), output_margin=True)

    _calibrate(ensemble, margin, "xgboost", model)
    return ensemble


def xgboost_zero_conflicts(model: Any) -> int:
    """Splits of an XGBoost model that send 0 elsewhere than their default (missing) direction: on a
    scipy sparse input every absent entry (a zero) is missing, so the model would then decide
    differently from its dense arrays at those splits."""
    learner, _, _ = _xgb_learner(model)
    conflicts = 0
    for tree in learner["gradient_booster"]["model"]["trees"]:
        t = _xgb_tree(tree, model)
        inner = t["feature"] >= 0
        zero_left = 0.0 <= t["threshold"]
        conflicts += int((inner & (zero_left != t["default_left"])).sum())
    return conflicts


# ---------------------------------------------------------------------- LightGBM
def _lgb_booster(model: Any) -> Any:
    import lightgbm

    return model if isinstance(model, lightgbm.Booster) else model.booster_


def _lgb_dump(model: Any) -> dict[str, Any]:
    return _lgb_booster(model).dump_model()


def _lgb_objective(dump: dict[str, Any], model: Any, regression: bool = False) -> tuple[int, float]:
    """(number of classes K (2 for one output), the sigmoid factor of a binary model), checked."""
    words = str(dump.get("objective", "")).split()
    name = words[0] if words else ""
    allowed = LIGHTGBM_REGRESSION if regression else LIGHTGBM_OBJECTIVES
    if name not in allowed:
        raise TypeError(f"unsupported LightGBM model {_name(model)} with objective {name or 'custom'!r}: "
                        f"{'a score model' if regression else 'a classifier'} ({', '.join(allowed)}) is needed")
    if regression:
        return 2, 1.0
    options = dict(w.split(":", 1) for w in words[1:] if ":" in w)
    if name == "binary":
        return 2, float(options.get("sigmoid", 1.0))
    return int(dump["num_class"]), 1.0


def _lgb_tree(root: dict[str, Any], num_leaves: int, model: Any) -> dict[str, np.ndarray]:
    """Node arrays of one tree: inner node ``split_index``, leaf ``num_leaves − 1 + leaf_index``."""
    n = 2 * num_leaves - 1
    arrays = {"feature": np.full(n, -1, dtype=np.int64), "threshold": np.zeros(n), "left": np.zeros(n, dtype=np.int64),
              "right": np.zeros(n, dtype=np.int64), "leaf": np.zeros(n)}
    filled = np.zeros(n, dtype=bool)

    def node_id(node: dict[str, Any]) -> int:
        return int(node["split_index"]) if "split_index" in node else num_leaves - 1 + int(node.get("leaf_index", 0))

    stack = [root]
    while stack:
        node = stack.pop()
        i = node_id(node)
        if not 0 <= i < n or filled[i]:
            raise ValueError(f"{_name(model)}: the model dump's node numbering is not LightGBM's (node {i})")
        filled[i] = True
        if "split_index" not in node:
            if node.get("leaf_features"):
                raise TypeError(f"unsupported LightGBM model {_name(model)}: linear trees (linear_tree=True)")
            arrays["leaf"][i] = float(node["leaf_value"])
            continue
        if node.get("decision_type") != "<=":
            raise ValueError(f"{_name(model)}: categorical splits ({node.get('decision_type')!r}) are not supported; "
                             "one-hot encode the feature instead")
        threshold = float(node["threshold"])
        if node.get("missing_type") == "Zero" and (threshold >= 0.0) != bool(node.get("default_left")):
            raise ValueError(f"{_name(model)}: a split treats 0 as missing and sends it against its threshold "
                             "(zero_as_missing=True); train with zero_as_missing=False")
        arrays["feature"][i], arrays["threshold"][i] = int(node["split_feature"]), threshold
        arrays["left"][i], arrays["right"][i] = node_id(node["left_child"]), node_id(node["right_child"])
        stack += [node["left_child"], node["right_child"]]
    if not filled.all() or arrays["feature"][0] < 0 < num_leaves - 1:
        raise ValueError(f"{_name(model)}: the model dump's node numbering is not LightGBM's")
    return arrays


def from_lightgbm(model: Any, regression: bool = False) -> TreeEnsemble:
    """Export an ``LGBMClassifier`` or a classification ``Booster`` (see the module docstring); with
    ``regression``, an ``LGBMRegressor`` whose raw score is its prediction (one output)."""
    dump = _lgb_dump(model)
    k, sigmoid = _lgb_objective(dump, model, regression)
    per_iteration = int(dump["num_tree_per_iteration"])
    width = 1 if k == 2 else k
    if per_iteration != width:
        raise TypeError(f"unsupported LightGBM model {_name(model)}: {per_iteration} trees per iteration for {k} classes")
    trees = []
    for i, info in enumerate(dump["tree_info"]):
        t = _lgb_tree(info["tree_structure"], int(info["num_leaves"]), model)
        value = np.zeros((len(t["leaf"]), width))
        value[:, i % width] = t["leaf"]
        trees.append({**{key: t[key] for key in ("feature", "threshold", "left", "right")}, "value": value})
    iterations = max(1, len(trees) // width)
    scale = sigmoid / iterations if dump.get("average_output") else sigmoid
    ensemble = _ensemble(trees, width, scale=scale, n_features=int(dump["max_feature_idx"]) + 1, float32_inputs=False)

    def margin(probe: np.ndarray) -> np.ndarray:
        raw = np.asarray(_lgb_booster(model).predict(probe, raw_score=True), dtype=np.float64)
        # random-forest mode: predict averages the trees, but raw_score (LightGBM 4) gives their sum
        return sigmoid * raw / (iterations if dump.get("average_output") else 1)

    _calibrate(ensemble, margin, "lightgbm", model)
    return ensemble


def lightgbm_leaf_index(model: Any, nodes: np.ndarray) -> np.ndarray:
    """LightGBM's ``leaf_index`` (as ``predict(pred_leaf=True)`` gives it) of per-tree node ids
    (B, T) of :func:`from_lightgbm`'s arrays."""
    leaves = np.array([int(info["num_leaves"]) for info in _lgb_dump(model)["tree_info"]])
    return np.asarray(nodes) - (leaves - 1)[None, :]


# ---------------------------------------------------------------------- shared
def _ensemble(trees: list[dict[str, np.ndarray]], width: int, scale: float, n_features: int,
              float32_inputs: bool) -> TreeEnsemble:
    from .trees import _pad

    if not trees:
        raise ValueError("the booster has no trees")
    return TreeEnsemble("boosting", **_pad(trees, width), init=torch.zeros(width, dtype=torch.float64), scale=scale,
                        depth=max(_depth(t) for t in trees), n_features=n_features, float32_inputs=float32_inputs)


def _depth(tree: dict[str, np.ndarray]) -> int:
    """Longest root-to-leaf path from node 0 (children may precede parents in the numbering)."""
    best, stack, seen = 0, [(0, 0)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > len(tree["feature"]):
            raise ValueError("a tree's children form a cycle")
        if tree["feature"][node] < 0:
            best = max(best, depth)
        else:
            stack += [(int(tree["left"][node]), depth + 1), (int(tree["right"][node]), depth + 1)]
    return best


def _calibrate(model: TreeEnsemble, margin: Any, library: str, estimator: Any) -> None:
    """F₀ = the library's raw score − s Σ trees, on probe rows, checked constant."""
    probe = np.random.default_rng(0).random((16, model.n_features))
    raw = np.asarray(margin(probe), dtype=np.float64).reshape(len(probe), -1)
    with torch.no_grad():
        trees = model(torch.as_tensor(probe, dtype=torch.float64)).reshape(len(probe), -1).numpy()
    init = raw - trees
    tolerance = INIT_TOLERANCE[library] * max(1.0, model.n_trees / 100) * max(1.0, float(np.abs(raw).max()))
    if raw.shape[1] != model.value.shape[-1] or not np.allclose(init, init[0], rtol=0.0, atol=tolerance):
        raise ValueError(f"{_name(estimator)}: its raw scores do not follow from the exported trees (an initial score that "
                         "varies, or a base margin); not supported")
    model.init = torch.as_tensor(init.mean(0), dtype=torch.float64)


def export_booster(model: Any, regression: bool = False) -> TreeEnsemble:
    """A :class:`TreeEnsemble` of an XGBoost or LightGBM classifier (``regression``: a score model)."""
    library = _library(model)
    if library == "xgboost":
        return from_xgboost(model, regression)
    if library == "lightgbm":
        return from_lightgbm(model, regression)
    raise TypeError(f"not an XGBoost or LightGBM model: {type(model).__name__}")


def is_booster_regressor(model: Any) -> bool:
    """An XGBoost or LightGBM scikit-learn regressor (``XGBRegressor``, ``LGBMRegressor``)."""
    library = _library(model)
    if library is None:
        return False
    module = sys.modules[library]
    return isinstance(model, module.XGBRegressor if library == "xgboost" else module.LGBMRegressor)


def booster_classes(model: Any) -> list[Any]:
    """The class labels of the columns: the sklearn wrapper's ``classes_``; 0..C−1 for a bare Booster."""
    if hasattr(model, "classes_"):
        return np.asarray(model.classes_).tolist()
    if _library(model) == "xgboost":
        return list(range(_xgb_learner(model)[1]))
    return list(range(_lgb_objective(_lgb_dump(model), model)[0]))


__all__ = ["is_booster", "strict_splits", "export_booster", "from_xgboost", "from_lightgbm", "booster_classes",
           "lightgbm_leaf_index", "xgboost_zero_conflicts"]
