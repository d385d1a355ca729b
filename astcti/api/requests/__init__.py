"""Request declarations and their thin handlers, one module per feature."""

from astcti.api.requests import monitoring  # noqa: F401
from astcti.api.requests import control  # noqa: F401  (issue 4)
