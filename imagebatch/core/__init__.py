"""Shared core: settings, errors, the message schema, broker topology, database and telemetry.

Everything two services must agree on lives here, so that the operator, worker and api can stay
independent of each other (an import-linter contract enforces it).
"""
