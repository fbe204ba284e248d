"""Densities for the plausibility term ``-τ·log q̂_t(y)`` of the S-CFE objective.

Registered plugins: ``"kde"`` (:class:`KDEDensity`), ``"gmm"`` (:class:`GMMDensity`),
``"knn"`` (:class:`KNNGravityDensity`).  Use :func:`make_density` / :func:`fit_class_conditional`.
"""
from .base import (
    BaseDensity,
    ClassConditionalDensity,
    Density,
    available_densities,
    fit_class_conditional,
    get_density,
    make_density,
    register_density,
)
from .gmm import GMMDensity
from .kde import KDEDensity, scott_bandwidth, silverman_bandwidth
from .knn import KNNGravityDensity

__all__ = [
    "BaseDensity",
    "ClassConditionalDensity",
    "Density",
    "GMMDensity",
    "KDEDensity",
    "KNNGravityDensity",
    "available_densities",
    "fit_class_conditional",
    "get_density",
    "make_density",
    "register_density",
    "scott_bandwidth",
    "silverman_bandwidth",
]
