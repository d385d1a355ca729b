"""The astcti-shell commands, one module per group; the language they are declared in is
`astcti/admin/language.py`.

Handlers validate everything before they touch anything (bad input changes nothing), write the
store themselves (so the offline `--db` mode works) and change the running daemon only through
the daemon's own methods (`Daemon.watch_extension`, `Daemon.add_listener`,
`Daemon.apply_parameter`...), never through its internals.
"""

from astcti.admin.commands import (  # noqa: F401  (each module registers its commands)
    general, parameters, extensions, listeners, status, users, agents,
)
from astcti.admin.language import (  # noqa: F401  (the language, for callers of this package)
    CHOICES, COMMANDS, Command, CommandError, Context, execute, find, help_text, parse, tokenize,
)
