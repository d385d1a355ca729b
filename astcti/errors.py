"""Errors a user can cause or fix.

Each carries one line that names the cause and the fix; the CLI and the daemon print that line
instead of a traceback.
"""


class AstctiError(Exception):
    """An error whose message is fit to show to an operator as is."""


class StoreError(AstctiError):
    """The parameter store cannot be opened or written."""


class SecretError(AstctiError):
    """A secret cannot be decrypted (wrong key, tampered value) or the key file is unusable."""


class ConfigError(AstctiError):
    """A parameter value is malformed."""
