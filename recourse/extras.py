"""Optional parts of the package and the packages each needs (``pyproject.toml``'s extras).

The core install (``pip install recourse``) explains and trains; the service, audits, images,
peer benchmarks and XGBoost/LightGBM models are extras.  A missing package is reported with the
extra that brings it.
"""
from __future__ import annotations

EXTRAS: dict[str, tuple[str, ...]] = {
    "service": ("flask", "gunicorn", "swagger_ui", "prometheus_client", "psycopg", "psycopg_pool"),
    "audit": ("pyarrow", "dask", "distributed", "matplotlib"),
    "vision": ("skimage", "mlxtend", "captum", "PIL", "matplotlib"),
    "bench": ("dice_ml",),
    "boosters": ("xgboost", "lightgbm"),
}
"""Extra name → the top-level modules it installs (a module may come with more than one extra)."""


def extra_for(module: str) -> str | None:
    """The first extra that installs the top-level module of ``module`` (``dask.dataframe`` → audit)."""
    top = module.split(".", 1)[0]
    return next((name for name, modules in EXTRAS.items() if top in modules), None)


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """A one-line hint for a package of an extra that is not installed; None for any other module."""
    name = exc.name or ""
    extra = extra_for(name)
    if extra is None:
        return None
    return (f"this needs the package {name.split('.', 1)[0]!r}, part of the {extra!r} extra: "
            f"pip install 'recourse[{extra}]' (or 'recourse[all]')")
