"""Densities for the plausibility term ``-τ·log q̂_t(y)`` of the S-CFE objective.

Registered plugins: ``"kde"`` (:class:`KDEDensity`), ``"gmm"`` (:class:`GMMDensity`),
``"knn"`` (:class:`KNNGravityDensity`).  Use :func:`make_density` / :func:`fit_class_conditional`;
each plugin's default weight τ is its class attribute ``default_weight``
(:func:`default_density_weight`).  :class:`NoveltyLOF` is the LOF plausibility score.
"""
from .base import (
    BaseDensity,
    ClassConditionalDensity,
    Density,
    UnknownDensityError,
    available_densities,
    default_density_weight,
    fit_class_conditional,
    get_density,
    make_density,
    register_density,
)
from .gmm import GMMDensity
from .kde import KDEDensity, scott_bandwidth, silverman_bandwidth
from .knn import KNNGravityDensity
from .lof import NoveltyLOF

__all__ = [
    "BaseDensity",
    "ClassConditionalDensity",
    "Density",
    "GMMDensity",
    "KDEDensity",
    "KNNGravityDensity",
    "NoveltyLOF",
    "UnknownDensityError",
    "available_densities",
    "default_density_weight",
    "fit_class_conditional",
    "get_density",
    "make_density",
    "register_density",
    "scott_bandwidth",
    "silverman_bandwidth",
]
