"""Run a hostile case's Python code as a user's script would, reporting like the CLI.

``python pyharness.py CODE [trust]``: ``TRUST`` is ``True`` when ``trust`` is given. A
:class:`~deepimagej.errors.DeepImageJError` prints ``error: <message>`` and exits 2; any other
exception propagates (a traceback: the corpus counts it as a failure).
"""

import sys

from deepimagej.errors import DeepImageJError

TRUST = len(sys.argv) > 2 and sys.argv[2] == "trust"

try:
    exec(compile(sys.argv[1], "<case>", "exec"), {"TRUST": TRUST, "__name__": "__case__"})  # noqa: S102
except DeepImageJError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
