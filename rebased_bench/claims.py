"""Claims: sweeps sharing one results folder split its cases, each case run once.

Before a case runs, its sweep claims it: `<out>/claims/<kind>/<case_id>.claim`, created with O_CREAT | O_EXCL (one
creator wins, on a local disk and on NFS alike), holding JSON {host, pid, heartbeat}. A thread of the owner
rewrites the heartbeat every HEARTBEAT_SECONDS while it holds the claim; the claim goes once the case's row is
written. A claim whose owner is gone (same host, pid no longer running) or whose heartbeat is older than
STALE_SECONDS (a machine that died) is taken over: renamed away by one taker (a rename succeeds once), checked to
be the claim judged gone, then created anew.
"""

import json
import os
import threading
import time
from pathlib import Path

from . import console
from .files import HOST, disk_full_as_error, process_gone, write_atomic
from .interrupts import critical

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # a dozen missed heartbeats: the owner is gone (machines' clocks must agree to this)


class Claims:
    """The claims this process holds in one folder; a context manager that beats their hearts while inside."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.held: dict[str, bytes] = {}  # case id -> the claim's content as this process last wrote it
        self.lock = threading.Lock()  # the heartbeat thread and the sweep both touch held claims
        self.stopped = threading.Event()
        self.heart = threading.Thread(target=self._beat, name="claims-heartbeat", daemon=True)

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.heart.start()
        return self

    def __exit__(self, *exc):
        with critical():
            self.stopped.set()
            self.heart.join()
            for case_id in list(self.held):
                self.release(case_id)

    def path(self, case_id: str) -> Path:
        return self.folder / f"{case_id}.claim"

    def take(self, case_id: str) -> bool:
        """Claim a case: True when this process now holds it, False when a live owner does."""
        with critical():  # a signal never leaves a claim made but not held, nor a taken-over one moved away
            return self._take(case_id)

    def _take(self, case_id: str) -> bool:
        path = self.path(case_id)
        for _ in range(3):  # a claim released or taken over between two looks: look again
            if self._create(case_id):
                return True
            seen = _read(path)
            if seen is None:
                continue
            if not _gone(*seen):
                return False
            if self._take_over(case_id, seen[0]):
                return True
        return False

    def release(self, case_id: str):
        """Remove the claim, if it is still this process's own."""
        with critical(), self.lock:
            content = self.held.pop(case_id, None)
            seen = _read(self.path(case_id))
            if content is not None and seen is not None and seen[0] == content:
                self.path(case_id).unlink(missing_ok=True)

    def _create(self, case_id: str) -> bool:
        path, content = self.path(case_id), _content()
        with disk_full_as_error(path):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(content)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        with self.lock:
            self.held[case_id] = content
        return True

    def _take_over(self, case_id: str, gone: bytes) -> bool:
        path = self.path(case_id)
        moved = path.with_name(f".{path.name}.taken~{HOST}~{os.getpid()}.tmp")  # a temporary file's name
        try:
            os.rename(path, moved)  # of several takers, one moves it
        except FileNotFoundError:
            return self._create(case_id)
        try:
            if (_read(moved) or (None,))[0] != gone:  # a new owner's claim came in between: give it back
                try:
                    os.link(moved, path)  # never replaces a claim made meanwhile
                except FileExistsError:
                    pass
                return False
        finally:
            moved.unlink(missing_ok=True)
        console.log(f"taking over case {case_id}: its claim's owner is gone ({gone.decode(errors='replace')})")
        return self._create(case_id)

    def _beat(self):
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            for case_id in list(self.held):
                with self.lock:  # one claim at a time: the sweep never waits for a whole round
                    self._refresh(case_id)

    def _refresh(self, case_id: str):
        content, path = self.held.get(case_id), self.path(case_id)
        if content is None:  # released meanwhile
            return
        seen = _read(path)
        if seen is None or seen[0] != content:  # taken over after this process stalled past STALE_SECONDS
            console.warn(f"lost the claim of case {case_id} to another process")
            del self.held[case_id]
            return
        fresh = _content()
        try:
            write_atomic(path, lambda tmp: tmp.write_bytes(fresh))
        except Exception as exc:  # a full disk, say: the sweep's own writes report it
            console.warn(f"cannot refresh the claim of case {case_id}: {exc}")
            return
        self.held[case_id] = fresh


def live_claims(folder) -> dict[str, tuple[str, int]]:
    """The claims in `folder` whose owner is alive: case id -> (host, pid) of the process that runs the case."""
    owners = {}
    for path in Path(folder).glob("*.claim"):
        seen = _read(path)
        if seen is None or _gone(*seen):
            continue
        try:
            claim = json.loads(seen[0])
            owners[path.stem] = (str(claim["host"]), int(claim["pid"]))
        except (ValueError, KeyError, TypeError):  # being written this instant
            continue
    return owners


def _content() -> bytes:
    return json.dumps({"host": HOST, "pid": os.getpid(), "heartbeat": time.time()}).encode()


def _read(path: Path) -> tuple[bytes, float] | None:
    """(content, modification time) of a claim, or None when there is none."""
    try:
        with open(path, "rb") as file:
            return file.read(), os.fstat(file.fileno()).st_mtime
    except FileNotFoundError:
        return None


def _gone(content: bytes, mtime: float) -> bool:
    """Whether a claim's owner is gone: its process ended, or its heartbeat (or, unreadable, its file) is stale."""
    try:
        claim = json.loads(content)
        host, pid, heartbeat = str(claim["host"]), int(claim["pid"]), float(claim["heartbeat"])
    except (ValueError, KeyError, TypeError):  # being written this instant, or torn by a crash
        return time.time() - mtime > STALE_SECONDS
    return time.time() - heartbeat > STALE_SECONDS or process_gone(host, pid)
