"""Request declarations and their thin handlers, one module per feature."""

from astcti.api.requests import monitoring  # noqa: F401
