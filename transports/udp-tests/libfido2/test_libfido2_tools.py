"""libfido2's own, unmodified command-line tools (Debian `fido2-tools`) against a real
`fidelio serve` over UDP.

`udp_shim.c` is compiled here with gcc and LD_PRELOADed: it wraps `fido_dev_open` so that a
path "udp:HOST:PORT" gets report I/O over UDP (`fido_dev_set_io_functions`); CTAPHID framing,
CBOR, and all verification are libfido2's. `fido2-cred -V` verifies the packed attestation
statement and `fido2-assert -V` the assertion signature, with libfido2's (OpenSSL) code.

Input/output formats: fido2-cred(1), fido2-assert(1). The credential type is a positional
argument after the device (`es256`, `eddsa`); `-t` takes key=value options.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
AAGUID_HEX = "5f4d3c2b1a094e8f9d6c0b1a2f3e4d5c"
RP_ID = "example.com"
TOOLS = ("fido2-token", "fido2-cred", "fido2-assert")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def shim(tmp_path_factory) -> Path:
    missing = [tool for tool in (*TOOLS, "gcc") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: apt-get install fido2-tools libfido2-dev gcc",
            pytrace=False,
        )
    out = tmp_path_factory.mktemp("shim") / "udp_shim.so"
    build = subprocess.run(
        [
            "gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
            "-o", str(out), str(HERE / "udp_shim.c"), "-ldl", "-lfido2",
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.fail(f"compiling udp_shim.c failed:\n{build.stderr}", pytrace=False)
    return out


class Tools:
    """Runs the libfido2 tools with the shim preloaded, in a scratch directory."""

    def __init__(self, shim: Path, workdir: Path, device_path: str):
        self.shim = shim
        self.dir = workdir
        self.device = device_path

    def run(self, *args: str, expect_ok: bool = True, env: dict | None = None):
        result = subprocess.run(
            list(args),
            cwd=self.dir,
            env={**os.environ, "LD_PRELOAD": str(self.shim), **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            # No controlling terminal: a PIN prompt (there must be none: no PIN is set) fails
            # instead of waiting on /dev/tty.
            start_new_session=True,
        )
        if expect_ok and result.returncode != 0:
            pytest.fail(
                f"`{' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}",
                pytrace=False,
            )
        if not expect_ok and result.returncode == 0:
            pytest.fail(f"`{' '.join(args)}` succeeded but should have failed\n{result.stdout}",
                        pytrace=False)
        return result

    def write(self, name: str, lines: list[str]) -> str:
        (self.dir / name).write_text("\n".join(lines) + "\n")
        return name

    def read_lines(self, name: str) -> list[str]:
        return (self.dir / name).read_text().splitlines()

    # -- ceremonies ----------------------------------------------------------------------------
    def make_credential(self, tag: str, alg: str, resident: bool, user: str, user_id: bytes):
        """fido2-cred -M, then fido2-cred -V. Returns (credential id b64, pubkey file)."""
        cdh = hashlib.sha256(os.urandom(32)).digest()
        param = self.write(f"{tag}.cred_param", [b64(cdh), RP_ID, user, b64(user_id)])
        made = f"{tag}.made_cred"
        self.run("fido2-cred", "-M", *(["-r"] if resident else []), "-i", param, "-o", made,
                 self.device, alg)
        lines = self.read_lines(made)
        # cdh, rp id, fmt, authdata, credential id, signature [, x5c]: self attestation has none.
        assert len(lines) == 6, lines
        assert lines[0] == b64(cdh)
        assert lines[1] == RP_ID
        assert lines[2] == "packed"
        credential_id = lines[4]

        verified = f"{tag}.cred"
        self.run("fido2-cred", "-V", "-i", made, "-o", verified, alg)
        out = self.read_lines(verified)
        assert out[0] == credential_id
        assert out[1] == "-----BEGIN PUBLIC KEY-----" and out[-1] == "-----END PUBLIC KEY-----"
        pubkey = self.write(f"{tag}.pubkey", out[1:])
        return credential_id, pubkey

    def get_assertions(self, tag: str, credential_id: str | None) -> list[list[str]]:
        """fido2-assert -G -p (user presence requested); a resident request when no
        credential id is given. Returns the assertions, each as its output lines."""
        cdh = hashlib.sha256(os.urandom(32)).digest()
        lines = [b64(cdh), RP_ID] + ([credential_id] if credential_id else [])
        param = self.write(f"{tag}.assert_param", lines)
        out = f"{tag}.assertion"
        self.run("fido2-assert", "-G", "-p", *([] if credential_id else ["-r"]), "-i", param,
                 "-o", out, self.device)
        result = self.read_lines(out)
        per = 4 if credential_id else 5  # resident assertions carry the user id
        assert len(result) % per == 0 and result, result
        assertions = [result[i:i + per] for i in range(0, len(result), per)]
        for assertion in assertions:
            assert assertion[0] == b64(cdh) and assertion[1] == RP_ID
        return assertions

    def verify_assertion(self, tag: str, assertion: list[str], pubkey: str, alg: str):
        """fido2-assert -V -p: signature valid and UP signed; a tampered copy must fail."""
        name = self.write(f"{tag}.to_verify", assertion[:4])
        self.run("fido2-assert", "-V", "-p", "-i", name, pubkey, alg)
        signature = bytearray(base64.b64decode(assertion[3]))
        signature[len(signature) // 2] ^= 0x01
        bad = self.write(f"{tag}.tampered", assertion[:3] + [b64(bytes(signature))])
        self.run("fido2-assert", "-V", "-p", "-i", bad, pubkey, alg, expect_ok=False)


@pytest.fixture
def tools(shim, fidelio_daemon, tmp_path):
    def make(*daemon_args: str) -> Tools:
        daemon = fidelio_daemon(*daemon_args)
        return Tools(shim, tmp_path, daemon.path)

    return make


# -------------------------------------------------------------------------------------- tests
def test_token_info(tools):
    t = tools()
    out = t.run("fido2-token", "-I", t.device).stdout
    assert f"aaguid: {AAGUID_HEX}" in out, out
    versions = re.search(r"^version strings: (.*)$", out, re.M)
    assert versions and "FIDO_2_0" in versions.group(1).split(", "), out
    algorithms = re.search(r"^algorithms: (.*)$", out, re.M)
    assert algorithms and "es256" in algorithms.group(1) and "eddsa" in algorithms.group(1), out
    options = re.search(r"^options: (.*)$", out, re.M)
    assert options and "rk" in options.group(1).split(", "), out
    caps = re.search(r"^caps: (.*)$", out, re.M)
    assert caps and "cbor" in caps.group(1) and "nomsg" in caps.group(1), out


def test_token_list_shows_the_udp_device(tools):
    t = tools()
    out = t.run("fido2-token", "-L", env={"FIDELIO_UDP_DEVICES": t.device}).stdout
    assert any(line.startswith(f"{t.device}: ") and "Fidelio" in line
               for line in out.splitlines()), out


@pytest.mark.parametrize("resident", [False, True], ids=["non-resident", "resident"])
@pytest.mark.parametrize("alg", ["es256", "eddsa"])
def test_make_and_verify_credential_then_assertion(tools, alg, resident):
    t = tools()
    user_id = os.urandom(32)
    credential_id, pubkey = t.make_credential("c", alg, resident, "alice", user_id)
    assertions = t.get_assertions("a", None if resident else credential_id)
    assert len(assertions) == 1
    [assertion] = assertions
    if resident:
        assert assertion[4] == b64(user_id)
    t.verify_assertion("a", assertion, pubkey, alg)
    # And once more through the allow-list path for the resident credential too.
    [again] = t.get_assertions("b", credential_id)
    t.verify_assertion("b", again, pubkey, alg)


def test_several_resident_credentials_get_next_assertion(tools):
    """`fido2-assert -G -r` with two resident credentials: libfido2 collects the second
    through authenticatorGetNextAssertion; each assertion verifies under its own key."""
    t = tools()
    keys = {}
    for index, alg in enumerate(["es256", "eddsa"]):
        user_id = os.urandom(16)
        _, pubkey = t.make_credential(f"c{index}", alg, True, f"user{index}", user_id)
        keys[b64(user_id)] = (pubkey, alg)
    t.make_credential("c-nr", "es256", False, "not-resident", os.urandom(16))
    assertions = t.get_assertions("a", None)
    assert sorted(a[4] for a in assertions) == sorted(keys)
    for index, assertion in enumerate(assertions):
        pubkey, alg = keys[assertion[4]]
        t.verify_assertion(f"a{index}", assertion, pubkey, alg)


def test_token_reset(tools):
    t = tools("--reset-anytime")
    credential_id, _ = t.make_credential("c", "es256", True, "alice", os.urandom(16))
    t.get_assertions("before", None)
    t.run("fido2-token", "-R", t.device)
    param = t.write("after.assert_param",
                    [b64(hashlib.sha256(b"x").digest()), RP_ID, credential_id])
    failed = t.run("fido2-assert", "-G", "-i", param, t.device, expect_ok=False)
    assert "FIDO_ERR_NO_CREDENTIALS" in failed.stderr, failed.stderr
