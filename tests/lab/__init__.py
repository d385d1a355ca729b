"""The real-Asterisk lab: an Asterisk 22 chroot, SIPp phones and the astcti daemon on loopback.

`python -m tests.lab up|down|status` drives it; pytest fixtures use the same :class:`Lab`.
"""

from tests.lab.harness import Lab, LabConfig, LabError

__all__ = ["Lab", "LabConfig", "LabError"]
