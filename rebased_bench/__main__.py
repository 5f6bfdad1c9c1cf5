"""The `rebased-bench` command (and `python -m rebased_bench`): signals are handled before anything loads."""

import sys

from . import interrupts


def main():
    """Console entry point: SIGINT and SIGTERM handled (interrupts.py) from the start, then the command runs.

    A signal outside a sweep (while torch loads, say) ends the command with 130 or 143, never a traceback.
    """
    interrupts.install()
    try:
        from .cli import main as run_command
        run_command()
    except interrupts.Interrupted as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
