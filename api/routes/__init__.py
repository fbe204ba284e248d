"""Blueprints: ``v1`` (recourse, batch, predict, stored answers, schema, models) and ``meta`` (health, metrics, OpenAPI)."""
