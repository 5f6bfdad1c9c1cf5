"""Signals (SIGINT, SIGTERM, SIGKILL) at any moment of a sweep, and sweeps sharing one results folder through claims:
no lost or duplicated row, no traceback, no temporary file or claim left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rebased_bench import claims as claims_module
from rebased_bench import interrupts
from rebased_bench.config import case_id
from rebased_bench.files import HOST, remove_stale_temp_files, write_atomic
from rebased_bench.store import Store, read_rows
from sweep_helpers import HINT, SWEEP, TOY, environment, sweep_command, sweep_rows, temp_files, toy_sweep


# --- signals ------------------------------------------------------------------------------------------------------

def test_a_signal_during_a_write_lets_it_finish_then_stops(tmp_path):
    target = tmp_path / "row.bin"

    def write(tmp):
        tmp.write_bytes(b"first half ")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the write
        os.kill(os.getpid(), signal.SIGINT)  # and again: ignored
        with open(tmp, "ab") as file:
            file.write(b"second half")

    with pytest.raises(interrupts.Interrupted) as stopped, interrupts.handling():
        write_atomic(target, write)
    assert stopped.value.exit_code == 130
    assert target.read_bytes() == b"first half second half" and not temp_files(tmp_path)


def test_sigterm_in_a_case_keeps_the_finishedsweep_rows(tmp_path):
    report = toy_sweep(tmp_path, [1, 3, 5, 6])
    assert report.interrupted_by == signal.SIGTERM and report.ok == 2
    assert sorted(read_rows(tmp_path / "toy")["x"]) == [1, 3] and not temp_files(tmp_path)
    assert not list((tmp_path / "claims").rglob("*.claim"))


def wait_until_it_catches(command: subprocess.Popen, signum: int):
    """Until the running command has its own handler for signum (Linux: the SigCgt mask in /proc/<pid>/status)."""
    deadline = time.monotonic() + 60
    while command.poll() is None and time.monotonic() < deadline:
        caught = re.search(r"^SigCgt:\s*([0-9a-f]+)$", Path(f"/proc/{command.pid}/status").read_text(), re.M)
        if int(caught.group(1), 16) >> (signum - 1) & 1:
            return
        time.sleep(0.005)
    raise AssertionError(f"the command ended or ran 60 s without a handler for signal {signum}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_loads_ends_it_quietly(signum, tmp_path):
    command = subprocess.Popen(sweep_command(tmp_path / "none.toml", tmp_path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=environment())
    # The entry point takes SIGTERM first thing, then imports typer and torch (~0.35 s before torch's libraries
    # are mapped, 2 s in all): a signal then is one while the command loads. Before it the interpreter itself is
    # starting, and no program's code runs: a fixed delay instead raced that start on a busy machine.
    wait_until_it_catches(command, signal.SIGTERM)
    assert "libtorch" not in Path(f"/proc/{command.pid}/maps").read_text(), "signals are taken only after torch loads"
    command.send_signal(signum)
    command.send_signal(signum)
    stderr = command.communicate(timeout=60)[1]
    assert command.returncode == 128 + signum and "Traceback" not in stderr, stderr


def test_signals_and_kills_at_any_moment_lose_no_row_and_run_no_case_twice(tmp_path):
    suite, out = tmp_path / "sweep.toml", tmp_path / "out"
    suite.write_text(SWEEP)
    kept = {}  # case id -> started_at of every row seen so far: a row once written never changes
    for attempt, signals in enumerate([[signal.SIGINT] * 3, [signal.SIGTERM], [signal.SIGKILL]]):
        sweep = subprocess.Popen(sweep_command(suite, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=environment())
        deadline = time.monotonic() + 120
        while len(sweep_rows(out)) <= len(kept) and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until this run has written a row of its own
        time.sleep(0.05 * attempt)  # then somewhere in a later case: training, its state, its row
        for signum in signals:
            sweep.send_signal(signum)
            time.sleep(0.01)
        stderr = sweep.communicate(timeout=120)[1]
        assert "Traceback" not in stderr, stderr
        if signals[0] != signal.SIGKILL:
            assert sweep.returncode == 128 + signals[0] and HINT in stderr, stderr
            assert not temp_files(out) and not list((out / "claims").rglob("*.claim"))
        rows = sweep_rows(out)
        assert rows["case_id"].is_unique and len(rows) < 8
        for row in rows.itertuples():
            assert kept.setdefault(row.case_id, row.started_at) == row.started_at
        kept = dict(zip(rows["case_id"], rows["started_at"]))
    final = subprocess.run(sweep_command(suite, out), capture_output=True, text=True, env=environment(), timeout=300)
    assert final.returncode == 0, final.stderr
    rows = sweep_rows(out)
    assert len(rows) == 8 and rows["case_id"].is_unique and set(rows["status"]) == {"ok"}
    assert all(rows.set_index("case_id").loc[list(kept), "started_at"] == pd.Series(kept))
    assert not temp_files(out) and not list((out / "claims").rglob("*.claim"))
    assert not list((out / "state").rglob("*.pt"))


# --- claims: sweeps sharing one folder ------------------------------------------------------------------------------

def test_two_sweeps_on_one_folder_run_each_case_once(tmp_path):
    suite, out = tmp_path / "sweep.toml", tmp_path / "out"
    suite.write_text(SWEEP)
    sweeps = [subprocess.Popen(sweep_command(suite, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=environment()) for _ in range(2)]
    stderrs = [sweep.communicate(timeout=300)[1] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], stderrs
    ran = [int(re.search(r"ran (\d+) \(", stderr).group(1)) for stderr in stderrs]
    assert sum(ran) == 8 and min(ran) > 0, stderrs  # split between them, none twice
    rows = sweep_rows(out)
    assert len(rows) == 8 and set(rows["status"]) == {"ok"}
    assert any("being run by another process" in stderr or "already done" in stderr for stderr in stderrs)
    assert not list((out / "claims").rglob("*.claim")) and not temp_files(out)


def _claim(folder: Path, case: str, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{case}.claim").write_text(json.dumps({"host": HOST, "pid": os.getpid(), "heartbeat": time.time(),
                                                       **fields}))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_claim_is_taken_over_only_when_its_owner_is_gone(tmp_path):
    folder = tmp_path / "claims"
    _claim(folder, "live", pid=os.getppid())  # a running process of this machine
    _claim(folder, "dead", pid=_dead_pid())  # ended: killed while it ran the case
    _claim(folder, "far", host="another-machine", pid=1)  # another machine, heartbeat fresh
    _claim(folder, "silent", host="another-machine", pid=1, heartbeat=time.time() - claims_module.STALE_SECONDS - 1)
    (folder / "torn.claim").write_text('{"host": ')  # being written right now
    with claims_module.Claims(folder) as claims:
        taken = {case: claims.take(case) for case in ("live", "dead", "far", "silent", "torn", "new")}
        assert taken == {"live": False, "dead": True, "far": False, "silent": True, "torn": False, "new": True}
        assert json.loads((folder / "dead.claim").read_text())["pid"] == os.getpid()
        assert not claims_module.Claims(folder).take("new")  # held by this process: another sweep keeps off
    assert sorted(p.stem for p in folder.glob("*.claim")) == ["far", "live", "torn"]  # its own ones released
    assert not temp_files(folder)


def test_the_heartbeat_keeps_a_claim_fresh_and_lets_go_of_one_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(claims_module, "HEARTBEAT_SECONDS", 0.05)
    with claims_module.Claims(tmp_path) as claims:
        assert claims.take("mine") and claims.take("lost")
        started = json.loads((tmp_path / "mine.claim").read_text())["heartbeat"]
        with claims.lock:  # not in the middle of a refresh
            _claim(tmp_path, "lost", host="another-machine", pid=1)  # taken over while this process stalled
        deadline = time.monotonic() + 10
        while (json.loads((tmp_path / "mine.claim").read_text())["heartbeat"] == started or "lost" in claims.held) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "lost" not in claims.held and "mine" in claims.held
    assert sorted(p.stem for p in tmp_path.glob("*.claim")) == ["lost"]  # the other owner's claim stays


def test_a_case_claimed_elsewhere_is_skipped_and_reported(tmp_path):
    _claim(tmp_path / "claims" / "toy", case_id({"x": 3}), pid=os.getppid())
    report = toy_sweep(tmp_path, [1, 3])
    assert (report.ok, report.elsewhere) == (1, 1) and list(read_rows(tmp_path / "toy")["x"]) == [1]


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    dead = tmp_path / "mqar" / f".abc.parquet~{HOST}~{_dead_pid()}.tmp"
    live = tmp_path / "mqar" / f".def.parquet~{HOST}~{os.getpid()}.tmp"
    far = tmp_path / "checkpoints" / "mqar" / ".ghi.pt~another-machine~1.tmp"
    for path in (dead, live, far):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    Store(tmp_path, "mqar", TOY.schema)
    assert not dead.exists() and live.exists() and far.exists()
    os.utime(far, (0, 0))  # an hour old and more: abandoned
    remove_stale_temp_files(tmp_path)
    assert not far.exists()
