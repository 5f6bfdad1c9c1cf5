"""SIGINT and SIGTERM: the first one stops the run, after any atomic write in progress; later ones are ignored.

The first signal raises `Interrupted` (a KeyboardInterrupt) in the main thread, or, while the main thread is inside
`critical()` (an atomic write, a row's bookkeeping), as soon as that section ends: a file being written is then
whole, never torn or left as a temporary file. Every later signal is ignored, so pressing Ctrl-C again while the
run shuts down never ends in a traceback.
"""

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; `exit_code` is the shell's for it (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    installed = False
    received: int | None = None  # the first signal, once one came
    deferred = False  # it came inside a critical section: raise when the section ends
    depth = 0  # nesting of the main thread's critical sections


_state = _State()


def _on_signal(signum, frame):
    # From now on the process is shutting down: later signals are ignored by the OS, where Python would restore
    # the default handlers while it finalizes (and a second Ctrl-C would kill it there).
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    _state.received = signum
    if _state.depth:
        _state.deferred = True
        return
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install():
    """Handle SIGINT and SIGTERM as described above for the rest of this process (the command line's entry point)."""
    if not _in_main_thread():
        return
    _state.installed, _state.received, _state.deferred = True, None, False
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


@contextmanager
def handling():
    """Handle SIGINT and SIGTERM as described above while inside (a sweep), counting signals afresh from its start.

    Also inside a command, since a library may have taken the signals meanwhile (Ray's driver takes SIGTERM).
    After it the previous handlers come back; in a command that `install()`ed and got a signal, later ones stay
    ignored while it ends. Outside the main thread it changes nothing.
    """
    if not _in_main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _state.received, _state.deferred = None, False
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        if _state.received is None or not _state.installed:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def received() -> int | None:
    """The signal that stopped the run, or None."""
    return _state.received


@contextmanager
def critical():
    """A section a signal does not cut short: in the main thread, a signal's Interrupted waits for its end.

    Sections nest; the interrupt comes when the outermost one ends normally. Other threads are never interrupted
    (Python runs signal handlers in the main thread), so there it changes nothing.
    """
    if not _in_main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if not _state.depth and _state.deferred:
        _state.deferred = False
        raise Interrupted(_state.received)
