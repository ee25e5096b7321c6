"""The one lock helper (``mutual_prompt.files.exclusive_lock``) under real concurrency: processes that
hold it, wait for it, are refused, inherit it, and are killed while holding it."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from mutual_prompt.files import LockHeld, describe_owner, exclusive_lock, is_lock_held, owner_record

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Takes the lock (argv[1]; with an owner record if argv[2] is "owner"), says so, then holds it until killed.
HOLDER = ("import sys, time; from mutual_prompt.files import exclusive_lock, owner_record; "
          "lock = exclusive_lock(sys.argv[1], owner=owner_record() if sys.argv[2] == 'owner' else None); "
          "print('locked', flush=True); time.sleep(120)")


def start_holder(path, owner: bool = True) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), "owner" if owner else "-"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_lock_is_taken_released_and_taken_again(tmp_path):
    path = tmp_path / "sub" / "x.lock"  # the folder is made
    with exclusive_lock(str(path)) as lock:
        assert lock.path == str(path) and is_lock_held(str(path))
    assert not is_lock_held(str(path)) and path.exists()  # the file stays, free
    lock = exclusive_lock(str(path), wait=False)
    lock.release()
    lock.release()  # a second release does nothing
    assert not is_lock_held(str(path))


def test_a_missing_lock_file_is_not_held_and_not_made(tmp_path):
    assert not is_lock_held(str(tmp_path / "none.lock"))
    assert not (tmp_path / "none.lock").exists()


def test_the_owner_record_is_in_the_file_while_held_and_erased_on_release(tmp_path):
    path = tmp_path / "x.lock"
    lock = exclusive_lock(str(path), owner=owner_record())
    record = json.loads(path.read_text())
    assert record["pid"] == os.getpid() and {"host", "started", "command"} <= set(record)
    lock.release()
    assert path.read_text() == ""


def test_a_held_lock_refuses_at_once_naming_its_holder(tmp_path):
    path = tmp_path / "x.lock"
    holder = start_holder(path)
    try:
        start = time.time()
        with pytest.raises(LockHeld) as refused:
            exclusive_lock(str(path), wait=False)
        assert time.time() - start < 5
        assert refused.value.path == str(path) and refused.value.owner["pid"] == holder.pid
        assert f"{path} is held by pid {holder.pid} on host " in str(refused.value)
        assert is_lock_held(str(path))
    finally:
        kill(holder)


def test_a_holder_without_an_owner_record_is_another_process(tmp_path, capsys):
    path = tmp_path / "x.lock"
    holder = start_holder(path, owner=False)
    try:
        with pytest.raises(LockHeld, match=f"^{path} is held by another process$") as refused:
            exclusive_lock(str(path), wait=False)
        assert refused.value.owner == {}
    finally:
        kill(holder)
    assert describe_owner({"pid": 7}) == "pid 7 on host ?, started ?: ?"


def test_a_waiting_process_says_so_and_goes_on_when_the_holder_is_killed(tmp_path, capsys):
    path = tmp_path / "x.lock"
    holder = start_holder(path)
    got = []
    waiter = threading.Thread(target=lambda: got.append(exclusive_lock(str(path), owner=owner_record())))
    try:
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not got  # blocked in flock
        assert f"Waiting for {path}, held by pid {holder.pid} on host " in capsys.readouterr().out
        kill(holder)  # SIGKILL: the kernel releases its lock
        waiter.join(timeout=30)
        assert not waiter.is_alive() and got
        assert json.loads(path.read_text())["pid"] == os.getpid()  # the waiter's record replaced the dead one's
    finally:
        kill(holder)
        for lock in got:
            lock.release()


def test_a_killed_holder_frees_the_lock(tmp_path):
    path = tmp_path / "x.lock"
    holder = start_holder(path)
    assert is_lock_held(str(path))
    kill(holder)
    assert path.read_text()  # its record stays behind, but nobody holds the lock
    assert not is_lock_held(str(path))
    exclusive_lock(str(path), wait=False, owner=owner_record()).release()


def test_a_child_that_inherits_the_descriptor_keeps_the_lock_until_it_ends(tmp_path):
    """The sweep's arrangement: it passes its locked descriptor to train.py and closes its own."""
    path = tmp_path / "x.lock"
    lock = exclusive_lock(str(path), wait=False)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=(lock.fd,))
    try:
        lock.release()
        assert is_lock_held(str(path))
    finally:
        kill(child)
    assert not is_lock_held(str(path))


def test_a_lock_without_owner_needs_only_read_access(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write any file")
    path = tmp_path / "x.lock"
    path.write_text("")
    path.chmod(0o444)
    with exclusive_lock(str(path)):
        assert is_lock_held(str(path))
