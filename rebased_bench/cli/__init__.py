"""The `rebased-bench` command line: suites in; Parquet rows, tables and figures out.

One module per command; the options and the run step the suite commands share are in shared.py. Bad input of any
command, a BenchError or a usage error, ends in one place (`OneLineErrors`): one line `error: ...` on stderr and
exit code 2, never a traceback.
"""

import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from .. import __version__, console, interrupts
from ..errors import BenchError
from . import ablate, iou, kernels, ls, mqar, plot, show

# Typer vendors click from 0.2x on and re-exports click's errors before that: reach the base class either way.
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class OneLineErrors(TyperGroup):
    """Runs a command; bad input becomes one line on stderr and exit code 2; SIGINT (Ctrl-C) and SIGTERM, which the
    entry point hands to interrupts.py, end it with exit code 130 and 143, never a traceback."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except BenchError as exc:
            console.error(str(exc))
            code = 2
        except ClickException as exc:
            if exc.format_message():  # empty after the help a bare command prints
                console.error(exc.format_message())
            code = 2
        except typer.Abort:  # a KeyboardInterrupt, as click reports it
            code = 130
        if code == 130 and interrupts.received():  # Typer reports every KeyboardInterrupt as 130, SIGTERM's too
            code = 128 + interrupts.received()
        if standalone_mode:
            sys.exit(code or 0)
        return code


app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, rich_markup_mode="rich", add_completion=False,
                  help="Benchmarks for linear attention with learnable kernel functions (ReBased).")


def _version(value: bool):
    if value:
        console.out(f"rebased-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None):
    """Benchmarks for linear attention with learnable kernel functions (ReBased)."""


app.command(epilog=mqar.EXAMPLES)(mqar.mqar)
app.command(epilog=kernels.EXAMPLES)(kernels.kernels)
app.command(epilog=ablate.EXAMPLES)(ablate.ablate)
app.command(epilog=iou.EXAMPLES)(iou.iou)
app.command("ls")(ls.list_suites)
app.command()(show.show)
app.command(epilog=plot.EXAMPLES)(plot.plot)


def main():
    """Run the command line (the entry point, `rebased_bench.__main__`, first takes over SIGINT and SIGTERM)."""
    app()
