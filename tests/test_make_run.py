"""`make run` serves the admin, and a signal to its process group stops every process it started within seconds.

The signals: SIGTERM (a service manager), SIGINT (Ctrl-C) and SIGHUP (a terminal closing). Each test starts the real
recipe in its own session, with the virtualenv that runs the tests (its install stamp is marked old with `make -o`,
so nothing is installed) and a temporary IMPEX_VAR_DIR (SQLite database, secret key, inboxes) shared by the module,
so only the first run pays for the migrations and the demo import.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
VENV = Path(sys.prefix)
START_WITHIN = 180  # seconds: the first run migrates a new SQLite database and imports the demo
STOP_WITHIN = 20  # seconds
CLUSTER_RUNNING = "[impex-hub] running."
# The cluster (main process, sentinel, workers, monitor, pusher), the web server and its autoreloader child, the
# recipe's shell and make itself.
EXPECTED_PROCESSES = settings.Q_CLUSTER["workers"] + 8

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads the process table from /proc (Linux)")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_processes() -> dict[int, tuple[int, int]]:
    """Return every live (not zombie) process as pid -> (parent pid, process group)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may hold spaces: the fields that follow start after the last ')'.
        state, ppid, pgid = stat[stat.rindex(")") + 2 :].split()[:3]
        if state != "Z":
            found[int(entry.name)] = (int(ppid), int(pgid))
    return found


def process_tree(root: int) -> dict[int, int]:
    """Return a process and all its live descendants as pid -> process group."""
    procs = live_processes()
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in tree:
            tree[pid] = procs[pid][1]
            todo += [child for child, (ppid, _) in procs.items() if ppid == pid]
    return tree


def survivors(started: dict[int, int]) -> list[int]:
    """Return the live processes that were started, or that belong to a process group that was started."""
    groups = set(started.values())
    return [pid for pid, (_, pgid) in live_processes().items() if pid in started or pgid in groups]


def command_line(pid: int) -> str:
    """Return the command line of a process, or '' once it is gone."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def start_make(target: str, *, env: dict, port: int, log: Path) -> subprocess.Popen:
    """Start a make target on the port (the install stamp taken as new), as a terminal would in the foreground, in a
    new session (its own group), its output in the log."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["make", "-C", str(ROOT), target, f"VENV={VENV}", "-o", f"{VENV}/.installed", f"ADDR=127.0.0.1:{port}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A shell without job control starts background jobs with SIGINT ignored, and Python passes that on to
            # its children; a terminal's foreground job has SIGINT at its default, as here.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def start_make_run(*, var_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """Start `make run` on the port, as a terminal would in the foreground, in a new session (its own group)."""
    # As on a fresh machine: no SECRET_KEY (make run's steps share the key file it writes in the var dir) and
    # manage.py's own settings module, not the test suite's.
    unset = ("DATABASE_URL", "IMPEX_ROOT", "MEDIA_ROOT", "DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(IMPEX_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1")
    return start_make("run", env=env, port=port, log=log)


def wait_until_serving(make: subprocess.Popen, *, port: int, log: Path) -> str:
    """Wait until the admin login page answers and the cluster runs; return the login page."""
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        if make.poll() is not None:
            pytest.fail(f"make run exited with {make.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5) as response:
                page = response.read().decode()
            if CLUSTER_RUNNING in log.read_text():
                return page
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"make run did not serve the admin within {START_WITHIN} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory):
    """One var dir for every `make run` of this module."""
    return tmp_path_factory.mktemp("var")


@dataclass
class MakeRun:
    """A `make run` that serves the admin: its make process, port, log, login page and the processes it started."""

    make: subprocess.Popen
    port: int
    log: Path
    page: str = ""
    started: dict[int, int] = field(default_factory=dict)

    def stop(self, signum: int) -> tuple[list[int], float]:
        """Send a signal to the group of make; return what is still running once all is gone or the bound passed."""
        began = time.monotonic()
        os.killpg(self.make.pid, signum)
        while survivors(self.started) and time.monotonic() < began + STOP_WITHIN:
            time.sleep(0.1)
        return survivors(self.started), time.monotonic() - began

    def describe(self, pids) -> str:
        """Return the command lines of some processes and the output of make, to explain a failure."""
        return "\n".join(f"{pid}: {command_line(pid)}" for pid in pids) + "\n" + self.log.read_text()


@pytest.fixture
def make_run(var_dir, tmp_path):
    """Start `make run` on a free port and wait until it serves; afterwards kill whatever of it is left."""
    port = free_port()
    log = tmp_path / "make-run.log"
    run = MakeRun(make=start_make_run(var_dir=var_dir, port=port, log=log), port=port, log=log)
    try:
        run.page = wait_until_serving(run.make, port=port, log=log)
        run.started = process_tree(run.make.pid)
        yield run
    finally:
        for pid in {*survivors(run.started), *(process_tree(run.make.pid) if run.make.poll() is None else ())}:
            os.kill(pid, signal.SIGKILL)
        run.make.wait(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_make_run_serves_the_admin_and_a_signal_to_its_group_stops_every_process(make_run, var_dir, signum):
    assert len(make_run.started) == EXPECTED_PROCESSES, make_run.describe(make_run.started)
    assert "impex-hub" in make_run.page and "Log in" in make_run.page
    assert (var_dir / "secret_key").is_file()  # with no SECRET_KEY set, a development key of this machine

    left, _ = make_run.stop(signum)

    assert left == [], f"still running {STOP_WITHIN} s after {signum.name}:\n{make_run.describe(left)}"
    assert make_run.make.wait(timeout=1) == -signum
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", make_run.port), timeout=2).close()
    text = make_run.log.read_text()
    url = f"http://127.0.0.1:{make_run.port}/admin/"
    assert f"and the web server at {url} (Ctrl-C stops both)\n" in text
    assert re.search(rf"^Admin login: admin / \S+ at {re.escape(url)}$", text, re.MULTILINE), text
    assert "Q Cluster" in text and "has stopped." in text


def test_make_run_kills_a_cluster_that_has_not_stopped_after_10_s(make_run):
    # The cluster's main process leads a process group of its own; its one child is the sentinel. A stopped
    # sentinel never lets the cluster stop, as a task still running would keep it waiting.
    cluster = next(pid for pid, pgid in make_run.started.items() if pgid == pid != make_run.make.pid)
    sentinel = next(pid for pid, (ppid, _) in live_processes().items() if ppid == cluster)
    os.kill(sentinel, signal.SIGSTOP)

    left, took = make_run.stop(signal.SIGTERM)

    assert left == [], make_run.describe(left)
    assert took >= 10
    assert "has stopped." not in make_run.log.read_text()
