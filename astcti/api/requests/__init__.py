"""Request declarations and their thin handlers, one module per feature."""

from astcti.api.requests import monitoring  # noqa: F401
from astcti.api.requests import acd, userdata  # noqa: F401,E402  (issue 5)
from astcti.api.requests import control  # noqa: F401  (issue 4)
from astcti.api.requests import desktop  # noqa: F401  (agent desktop, wallboard)
