"""Automatic rescue: incidents from source freshness, changes from merged code, and what the
two sensors share (launching a rescue by itself, idempotently). Sensors live in `sensors/`."""
