"""The ``deepimagej`` command (and ``python -m deepimagej``).

Loading the commands takes about half a second. Ctrl-C (SIGINT) in that time, or before a command's
own handling starts, ends the process with one line on stderr and status 130, as it does once the
command runs, never with a traceback (:mod:`deepimagej.interrupts`).
"""

from __future__ import annotations

from deepimagej.interrupts import quiet_while_loading


def main() -> None:
    """Run the ``deepimagej`` command line."""
    quiet_while_loading()
    from deepimagej.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
