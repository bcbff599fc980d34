"""Shared fixture: a real `fidelio serve --ephemeral` daemon per test, on free loopback ports.

`fidelio_daemon(*extra_args)` starts one (more than one per test is fine), waits until its
UDP lane answers a CTAPHID INIT, and returns a `Daemon`. `fidelio_daemon(gateway=True)` also
serves the browser gateway on a free loopback port (`--browser 127.0.0.1:0`) with its token
file in the test's directory; the control API and `fidelio device` live there, and the daemon's
`gateway_file`, `gateway_url` and `gateway_token` say where. At teardown every daemon still running
gets SIGTERM and must exit 0; a daemon that died on its own (crash, panic) fails the test, with
the tail of its log in the message.

The binary comes from FIDELIO_BIN (what .ci/test-all sets), else
${CARGO_TARGET_DIR:-<repo>/target}/debug/fidelio.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REPORT = 64
BROADCAST = 0xFFFFFFFF
CTAPHID_INIT = 0x86


def fidelio_bin() -> str:
    explicit = os.environ.get("FIDELIO_BIN")
    if explicit:
        path = explicit
    else:
        target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
        path = os.path.join(target, "debug", "fidelio")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"fidelio binary not found at {path}: build it with `cargo build -p fidelio-cli` "
            "and/or set FIDELIO_BIN",
            pytrace=False,
        )
    return path


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ctaphid_init_answers(port: int, timeout: float) -> bool:
    """Sends CTAPHID_INIT on the broadcast channel; True once a matching answer arrives."""
    nonce = os.urandom(8)
    packet = struct.pack(">IBH", BROADCAST, CTAPHID_INIT, len(nonce)) + nonce
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(timeout)
        try:
            s.send(packet.ljust(REPORT, b"\0"))
            answer = s.recv(2048)
        except (socket.timeout, ConnectionRefusedError):
            return False
    # An INIT *answer* carries 17 bytes. Checking it matters: while the daemon is still
    # starting, the kernel may give this probe socket the very port the daemon is about to
    # bind, and the probe then reads back its own 8-byte request.
    return (
        len(answer) == REPORT
        and answer[:5] == struct.pack(">IB", BROADCAST, CTAPHID_INIT)
        and answer[5:7] == struct.pack(">H", 17)
        and answer[7:15] == nonce
    )


class Daemon:
    """One running `fidelio serve`."""

    def __init__(
        self,
        binary: str,
        args: list[str],
        log_dir: Path,
        index: int,
        gateway_file: Path | None = None,
    ):
        self.binary = binary
        self.args = args
        self.log_path = log_dir / f"fidelio-{index}.log"
        # The browser gateway's token file ({url, token, pid}), when it serves one.
        self.gateway_file = gateway_file
        self.gateway_url = ""
        self.gateway_token = ""
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.control = ""
        self.exit_code: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, attempts: int = 5) -> "Daemon":
        for _ in range(attempts):
            self.port = free_port(socket.SOCK_DGRAM)
            control_port = free_port(socket.SOCK_STREAM)
            self.control = f"{self.host}:{control_port}"
            command = [
                self.binary,
                "serve",
                "--udp",
                f"{self.host}:{self.port}",
                "--control",
                self.control,
                *self.args,
            ]
            log = open(self.log_path, "ab")
            log.write(("$ " + " ".join(command) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "FIDELIO_LOG": os.environ.get("FIDELIO_LOG", "info")},
            )
            log.close()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if ctaphid_init_answers(self.port, 0.2) and self.proc.poll() is None:
                    if self.gateway_file is None or self._gateway_ready(deadline):
                        return self
                    break
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(
                    f"fidelio serve did not answer CTAPHID_INIT on udp:{self.host}:{self.port} "
                    f"within 20 s\n{self.log_tail()}",
                    pytrace=False,
                )
            # It exited: retry only when a port was taken between our probe and its bind.
            if "cannot listen" not in self.log_tail():
                pytest.fail(
                    f"fidelio serve exited with {self.proc.returncode} at start\n{self.log_tail()}",
                    pytrace=False,
                )
        pytest.fail(f"fidelio serve could not bind free ports\n{self.log_tail()}", pytrace=False)

    def _gateway_ready(self, deadline: float) -> bool:
        """Waits for the token file this very process wrote (its `pid`); False if it died."""
        assert self.gateway_file is not None and self.proc is not None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                data = json.loads(self.gateway_file.read_text())
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict) and data.get("pid") == self.proc.pid:
                self.gateway_url = data["url"]
                self.gateway_token = data["token"]
                return True
            time.sleep(0.02)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(
                f"fidelio serve wrote no gateway token file at {self.gateway_file}\n"
                f"{self.log_tail()}",
                pytrace=False,
            )
        return False

    def stop(self) -> int:
        """SIGTERM, then the exit code (a daemon that does not stop in 10 s is killed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_code = -9
                return self.exit_code
        self.exit_code = self.proc.returncode
        return self.exit_code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "---- fidelio log (tail) ----\n" + "\n".join(text[-lines:])

    # -- helpers -----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The device path the UDP clients use: udp:HOST:PORT."""
        return f"udp:{self.host}:{self.port}"

    def power_cycle(self) -> str:
        result = subprocess.run(
            [self.binary, "power-cycle", "--control", self.control],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            pytest.fail(
                f"fidelio power-cycle failed ({result.returncode}): {result.stderr}\n"
                f"{self.log_tail()}",
                pytrace=False,
            )
        return result.stdout


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Nothing here may be skipped silently: a skip (a missing tool, say) is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but this suite allows no skips: {report.longrepr}"


@pytest.fixture
def fidelio_daemon(tmp_path):
    """Factory: `fidelio_daemon("--presence", "deny")` starts `fidelio serve --ephemeral ...`;
    `fidelio_daemon("--state", path, ephemeral=False)` keeps credentials in a file;
    `fidelio_daemon(gateway=True)` adds the browser gateway (control API, `fidelio device`)."""
    binary = fidelio_bin()
    daemons: list[Daemon] = []

    def start(*args: str, ephemeral: bool = True, gateway: bool = False) -> Daemon:
        argv = (["--ephemeral"] if ephemeral else []) + [str(a) for a in args]
        index = len(daemons)
        gateway_file = None
        if gateway:
            gateway_file = tmp_path / f"gateway-{index}.json"
            argv += ["--browser", "127.0.0.1:0", "--browser-token-file", str(gateway_file)]
        daemon = Daemon(binary, argv, tmp_path, index, gateway_file)
        daemons.append(daemon)
        return daemon.start()

    yield start

    problems = []
    for daemon in daemons:
        if daemon.proc is None:
            continue
        if daemon.exit_code is not None:
            code, crashed = daemon.exit_code, False  # stopped by the test itself
        elif daemon.alive():
            code, crashed = daemon.stop(), False
        else:
            code, crashed = daemon.proc.returncode, True
        log = daemon.log_tail()
        if crashed:
            problems.append(f"fidelio serve {daemon.args} died during the test (exit {code})\n{log}")
        elif code != 0:
            problems.append(f"fidelio serve {daemon.args} exited {code} on SIGTERM\n{log}")
        elif "panicked" in daemon.log_path.read_text(errors="replace"):
            problems.append(f"fidelio serve {daemon.args} logged a panic\n{log}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
