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
import dataclasses
import fcntl
import hashlib
import os
import pty
import re
import select
import shutil
import subprocess
import tempfile
import termios
import time
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

    def run(self, *args: str, expect_ok: bool = True, env: dict | None = None,
            stdin: str | None = None):
        result = subprocess.run(
            list(args),
            cwd=self.dir,
            env={**os.environ, "LD_PRELOAD": str(self.shim), **(env or {})},
            # `stdin` answers PIN prompts: with no controlling terminal (below) libfido2's
            # readpassphrase reads stdin instead of /dev/tty. Without it a prompt fails at
            # once instead of waiting.
            **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
            capture_output=True,
            text=True,
            timeout=60,
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

    def make_u2f_credential(self, tag: str):
        """fido2-cred -M -u (U2F_REGISTER over CTAPHID_MSG), then fido2-cred -V, which checks
        the fido-u2f attestation signature with the certificate's key. Returns (credential id
        b64, pubkey file, certificate DER)."""
        cdh = hashlib.sha256(os.urandom(32)).digest()
        param = self.write(f"{tag}.cred_param", [b64(cdh), RP_ID, "u2f-user", b64(b"u2f")])
        made = f"{tag}.made_cred"
        self.run("fido2-cred", "-M", "-u", "-i", param, "-o", made, self.device, "es256")
        lines = self.read_lines(made)
        # cdh, rp id, fmt, authdata, credential id, signature, x5c.
        assert len(lines) == 7, lines
        assert lines[0] == b64(cdh) and lines[1] == RP_ID
        assert lines[2] == "fido-u2f"
        credential_id = lines[4]
        assert len(base64.b64decode(credential_id)) == 64
        certificate = base64.b64decode(lines[6])

        verified = f"{tag}.cred"
        self.run("fido2-cred", "-V", "-i", made, "-o", verified, "es256")
        out = self.read_lines(verified)
        assert out[0] == credential_id
        pubkey = self.write(f"{tag}.pubkey", out[1:])
        # A tampered attestation signature must not verify.
        signature = bytearray(base64.b64decode(lines[5]))
        signature[len(signature) // 2] ^= 0x01
        bad = self.write(f"{tag}.tampered_cred", lines[:5] + [b64(bytes(signature))] + lines[6:])
        self.run("fido2-cred", "-V", "-i", bad, "es256", expect_ok=False)
        return credential_id, pubkey, certificate

    def get_assertions(self, tag: str, credential_id: str | None,
                       u2f: bool = False) -> list[list[str]]:
        """fido2-assert -G -p (user presence requested); a resident request when no
        credential id is given; over U2F (-u) when asked. Returns the assertions, each as its
        output lines."""
        cdh = hashlib.sha256(os.urandom(32)).digest()
        lines = [b64(cdh), RP_ID] + ([credential_id] if credential_id else [])
        param = self.write(f"{tag}.assert_param", lines)
        out = f"{tag}.assertion"
        self.run("fido2-assert", "-G", "-p", *(["-u"] if u2f else []),
                 *([] if credential_id else ["-r"]), "-i", param, "-o", out, self.device)
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
    assert versions and {"U2F_V2", "FIDO_2_0"} <= set(versions.group(1).split(", ")), out
    algorithms = re.search(r"^algorithms: (.*)$", out, re.M)
    assert algorithms and "es256" in algorithms.group(1) and "eddsa" in algorithms.group(1), out
    options = re.search(r"^options: (.*)$", out, re.M)
    assert options and "rk" in options.group(1).split(", "), out
    # "caps: 0x05 (wink, cbor, msg)": CTAP2 and CTAP1/U2F, libfido2 prints "msg" when NMSG
    # is clear ("nomsg" when set).
    caps = re.search(r"^caps: 0x[0-9a-f]+ \((.*)\)$", out, re.M)
    assert caps and {"cbor", "msg"} <= set(caps.group(1).split(", ")), out
    assert "nomsg" not in caps.group(1).split(", "), out


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


# ------------------------------------------------------------------------------------ U2F
def test_u2f_credential_verifies_and_signs_over_u2f_and_ctap2(tools):
    """fido2-cred -M -u: a fido-u2f credential from U2F_REGISTER, verified by libfido2 with the
    certificate's key; then assertions for it over U2F (fido2-assert -u) and over CTAP2."""
    t = tools()
    credential_id, pubkey, certificate = t.make_u2f_credential("u")
    # The device certificate: libfido2 found its end with d2i_X509, so it is DER X.509.
    assert certificate[0] == 0x30 and b"Fidelio U2F" in certificate
    counters = []
    for tag, u2f in [("over-u2f", True), ("over-ctap2", False), ("again-u2f", True)]:
        [assertion] = t.get_assertions(tag, credential_id, u2f=u2f)
        t.verify_assertion(tag, assertion, pubkey, "es256")
        auth_data = cbor_bytes(base64.b64decode(assertion[2]))
        assert auth_data[:32] == hashlib.sha256(RP_ID.encode()).digest()
        assert auth_data[32] & 0x01, "UP"
        counters.append(int.from_bytes(auth_data[33:37], "big"))
    # One counter, whichever protocol signs.
    assert counters == sorted(set(counters)), counters


def test_ctap2_credential_signs_over_u2f(tools):
    """A CTAP2 non-resident ES256 credential answers U2F_AUTHENTICATE (fido2-assert -u)."""
    t = tools()
    credential_id, pubkey = t.make_credential("c", "es256", False, "alice", os.urandom(16))
    [assertion] = t.get_assertions("a", credential_id, u2f=True)
    t.verify_assertion("a", assertion, pubkey, "es256")


def cbor_bytes(data: bytes) -> bytes:
    """fido2-assert prints authenticator data as a CBOR byte string: its contents."""
    head = data[0]
    assert head >> 5 == 2, data[:4].hex()
    info = head & 0x1F
    if info < 24:
        return data[1:1 + info]
    if info == 24:
        return data[2:2 + data[1]]
    if info == 25:
        return data[3:3 + int.from_bytes(data[1:3], "big")]
    raise AssertionError(f"unexpected CBOR length {info}")


# ------------------------------------------------------------------------- hmac-secret, credProtect
def make_with_options(t: Tools, tag: str, options: list[str], resident: bool,
                      rp_id: str = RP_ID) -> tuple[list[str], str]:
    """fido2-cred -M with extension options (`-h`, `-c N`), then fido2-cred -V with the same
    options, which checks them against the signed authenticator data. Returns the -M output
    lines and the public key file."""
    cdh = hashlib.sha256(os.urandom(32)).digest()
    param = t.write(f"{tag}.cred_param", [b64(cdh), rp_id, tag, b64(os.urandom(16))])
    made = f"{tag}.made_cred"
    t.run("fido2-cred", "-M", "-q", *options, *(["-r"] if resident else []), "-i", param,
          "-o", made, t.device, "es256")
    lines = t.read_lines(made)
    assert len(lines) == 6 and lines[2] == "packed", lines
    verified = f"{tag}.cred"
    t.run("fido2-cred", "-V", *options, "-i", made, "-o", verified, "es256")
    pubkey = t.write(f"{tag}.pubkey", t.read_lines(verified)[1:])
    return lines, pubkey


def hmac_secret_assertions(t: Tools, tag: str, salt: bytes,
                           credential_id: str | None) -> list[list[str]]:
    """fido2-assert -G -p -h with an hmac salt (fido2-assert(1): after the credential id, if
    any). Each assertion's lines end with its hmac-secret output."""
    cdh = hashlib.sha256(os.urandom(32)).digest()
    lines = [b64(cdh), RP_ID] + ([credential_id] if credential_id else []) + [b64(salt)]
    param = t.write(f"{tag}.assert_param", lines)
    out = f"{tag}.assertion"
    t.run("fido2-assert", "-G", "-p", "-h", *([] if credential_id else ["-r"]), "-i", param,
          "-o", out, t.device)
    result = t.read_lines(out)
    per = 5 if credential_id else 6  # a resident assertion carries the user id
    assert len(result) % per == 0 and result, result
    return [result[i:i + per] for i in range(0, len(result), per)]


@pytest.mark.parametrize("resident", [False, True], ids=["non-resident", "resident"])
def test_hmac_secret(tools, resident):
    """fido2-cred -M -h makes an hmac-secret credential (-V -h checks the signed extension
    data); fido2-assert -G -h with a 32- or 64-byte salt gets libfido2's decrypted
    hmac-secret output: the same for the same salt, another for another salt, salt1 ‖ salt2
    giving both; fido2-assert -V -h verifies the assertion with its ED bit."""
    t = tools()
    made, pubkey = make_with_options(t, "hs", ["-h"], resident)
    auth_data = cbor_bytes(base64.b64decode(made[3]))
    assert auth_data[32] & 0x80, "ED"
    assert auth_data.endswith(b"\xa1\x6bhmac-secret\xf5"), auth_data[-16:].hex()
    credential_id = made[4]
    salt1, salt2 = os.urandom(32), os.urandom(32)

    def secret(tag: str, salt: bytes, by_id: bool = True) -> bytes:
        [assertion] = hmac_secret_assertions(t, tag, salt, credential_id if by_id else None)
        data = cbor_bytes(base64.b64decode(assertion[2]))
        assert data[32] & 0x81 == 0x81, "UP and ED"
        assert data[37:38] == b"\xa1", "one extension output"
        verified = t.write(f"{tag}.to_verify", assertion[:4])
        t.run("fido2-assert", "-V", "-p", "-h", "-i", verified, pubkey, "es256")
        return base64.b64decode(assertion[-1])

    first = secret("a1", salt1)
    assert len(first) == 32
    assert secret("a2", salt1) == first
    other = secret("a3", salt2)
    assert len(other) == 32 and other != first
    assert secret("a4", salt1 + salt2) == first + other
    if resident:
        assert secret("a5", salt1, by_id=False) == first


def test_cred_protect(tools):
    """fido2-cred -M -c 2 / -c 3 (credProtect): -V -c checks the signed level; without UV a
    level-2 credential signs only when named in the allow list, a level-3 one never."""
    t = tools()
    made, pubkey = make_with_options(t, "cp2", ["-c", "2"], True, rp_id="example.org")
    failed = t.run("fido2-cred", "-V", "-c", "3", "-i", "cp2.made_cred", "es256",
                   expect_ok=False)
    assert "FIDO_ERR_INVALID_PARAM" in failed.stderr, failed.stderr
    cdh = b64(hashlib.sha256(b"cp").digest())
    discover = t.write("cp2.discover", [cdh, "example.org"])
    failed = t.run("fido2-assert", "-G", "-r", "-i", discover, t.device, expect_ok=False)
    assert "FIDO_ERR_NO_CREDENTIALS" in failed.stderr, failed.stderr
    named = t.write("cp2.named", [cdh, "example.org", made[4]])
    t.run("fido2-assert", "-G", "-p", "-i", named, "-o", "cp2.assertion", t.device)
    verified = t.write("cp2.to_verify", t.read_lines("cp2.assertion")[:4])
    t.run("fido2-assert", "-V", "-p", "-i", verified, pubkey, "es256")

    made, _ = make_with_options(t, "cp3", ["-c", "3"], False, rp_id="example.org")
    named = t.write("cp3.named", [cdh, "example.org", made[4]])
    failed = t.run("fido2-assert", "-G", "-i", named, t.device, expect_ok=False)
    assert "FIDO_ERR_NO_CREDENTIALS" in failed.stderr, failed.stderr


# ------------------------------------------------------------------------ credential management
PIN = "1234"


def with_pin(t: Tools, *args: str, expect_ok: bool = True):
    """A tool run that asks for the PIN once (on stdin, see Tools.run)."""
    return t.run(*args, expect_ok=expect_ok, stdin=f"{PIN}\n")


def make_resident_with_uv(t: Tools, tag: str, rp_id: str, user_id: bytes, alg: str):
    """fido2-cred -M -r -v (the PIN), then fido2-cred -V -v (UV flag checked). Returns the
    credential id (base64) and the public key as PEM lines."""
    cdh = hashlib.sha256(os.urandom(32)).digest()
    param = t.write(f"{tag}.cred_param", [b64(cdh), rp_id, tag, b64(user_id)])
    made = f"{tag}.made_cred"
    with_pin(t, "fido2-cred", "-M", "-r", "-v", "-i", param, "-o", made, t.device, alg)
    lines = t.read_lines(made)
    assert len(lines) == 6 and lines[1] == rp_id, lines
    verified = f"{tag}.cred"
    t.run("fido2-cred", "-V", "-v", "-i", made, "-o", verified, alg)
    out = t.read_lines(verified)
    assert out[0] == lines[4]
    return lines[4], out[1:]


def list_rps(t: Tools) -> dict[str, str]:
    """fido2-token -L -r: RP id -> base64 rpIDHash."""
    out = with_pin(t, "fido2-token", "-L", "-r", t.device).stdout
    rps = {}
    for line in out.splitlines():
        match = re.fullmatch(r"\d\d: (\S+) (\S+)", line)
        assert match, line
        rps[match.group(2)] = match.group(1)
    return rps


def list_credentials(t: Tools, rp_id: str) -> dict[str, tuple[str, str, str, str]]:
    """fido2-token -L -k rp_id: credential id -> (display name, user id, type, protection)."""
    out = with_pin(t, "fido2-token", "-L", "-k", rp_id, t.device).stdout
    credentials = {}
    for line in out.splitlines():
        match = re.fullmatch(r"\d\d: (\S+) (.*) (\S+) (\S+) (\S+)", line)
        assert match, line
        credentials[match.group(1)] = match.groups()[1:]
    return credentials


def metadata(t: Tools) -> tuple[int, int]:
    """fido2-token -I -c: (existing, remaining) discoverable credentials."""
    out = with_pin(t, "fido2-token", "-I", "-c", t.device).stdout
    existing = re.search(r"^existing rk\(s\): (\d+)$", out, re.M)
    remaining = re.search(r"^remaining rk\(s\): (\d+)$", out, re.M)
    assert existing and remaining, out
    return int(existing.group(1)), int(remaining.group(1))


def test_credential_management(tools):
    """fido2-token's credential management (authenticatorCredentialManagement with a PIN
    token: unbound for -I -c and -L -r, bound to the RP for -L -k and -I -k): metadata, RPs,
    credentials and their public keys, updating names, deleting."""
    t = tools()
    t.run("fido2-token", "-S", t.device, stdin=f"{PIN}\n{PIN}\n")
    alice, alice_key = make_resident_with_uv(t, "alice", RP_ID, b"alice-id", "es256")
    bob, bob_key = make_resident_with_uv(t, "bob", RP_ID, b"bob-id", "eddsa")
    carol, carol_key = make_resident_with_uv(t, "carol", "example.org", b"carol-id", "es256")

    assert metadata(t) == (3, 97)
    assert list_rps(t) == {
        rp: b64(hashlib.sha256(rp.encode()).digest()) for rp in (RP_ID, "example.org")
    }
    # fido2-cred sets no display name: libfido2 prints "(null)". credProtect 1: "uvopt".
    assert list_credentials(t, RP_ID) == {
        alice: ("(null)", b64(b"alice-id"), "es256", "uvopt"),
        bob: ("(null)", b64(b"bob-id"), "eddsa", "uvopt"),
    }
    # One credential with its public key: the registration's.
    for rp_id, credential, key in [(RP_ID, alice, alice_key), (RP_ID, bob, bob_key),
                                   ("example.org", carol, carol_key)]:
        out = with_pin(t, "fido2-token", "-I", "-k", rp_id, "-i", credential, t.device).stdout
        assert out.splitlines() == [credential, *key], out

    # New names (fido2-token -S -c); another user id is refused.
    with_pin(t, "fido2-token", "-S", "-c", "-i", alice, "-k", b64(b"alice-id"), "-n", "alice2",
             "-p", "Alice Two", t.device)
    assert list_credentials(t, RP_ID)[alice] == ("Alice Two", b64(b"alice-id"), "es256", "uvopt")
    refused = with_pin(t, "fido2-token", "-S", "-c", "-i", alice, "-k", b64(b"mallory"), "-n",
                       "m", "-p", "M", t.device, expect_ok=False)
    assert "FIDO_ERR_INVALID_PARAMETER" in refused.stderr, refused.stderr

    # Deleting: gone from the metadata, the lists and getAssertion.
    with_pin(t, "fido2-token", "-D", "-i", bob, t.device)
    assert metadata(t) == (2, 98)
    assert set(list_credentials(t, RP_ID)) == {alice}
    param = t.write("bob.assert_param", [b64(hashlib.sha256(b"x").digest()), RP_ID, bob])
    failed = t.run("fido2-assert", "-G", "-i", param, t.device, expect_ok=False)
    assert "FIDO_ERR_NO_CREDENTIALS" in failed.stderr, failed.stderr
    again = with_pin(t, "fido2-token", "-D", "-i", bob, t.device, expect_ok=False)
    assert "FIDO_ERR_NO_CREDENTIALS" in again.stderr, again.stderr
    with_pin(t, "fido2-token", "-D", "-i", carol, t.device)
    assert list_rps(t) == {RP_ID: b64(hashlib.sha256(RP_ID.encode()).digest())}
    assert metadata(t) == (1, 99)


# ------------------------------------------------- large blobs, alwaysUv, minimum PIN length
@dataclasses.dataclass
class TtyRun:
    returncode: int
    stdout: str
    stderr: str
    prompts: list[str]


def run_with_tty(t: Tools, *args: str, pins: list[str], expect_ok: bool = True) -> TtyRun:
    """Runs a tool whose controlling terminal is a pseudo-terminal, as a person at a terminal
    would: every PIN prompt libfido2's readpassphrase writes to /dev/tty is answered with the
    next of `pins` (all of which must be used). stdout and stderr are kept apart from it."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            list(args),
            cwd=t.dir,
            env={**os.environ, "LD_PRELOAD": str(t.shim)},
            stdin=slave,
            stdout=out,
            stderr=err,
            # A new session whose controlling terminal is the pty's slave side.
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        answers = list(pins)
        prompts: list[str] = []
        seen = b""
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if not ready:
                    if process.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(master, 1024)
                except OSError:  # EIO: the tool closed its terminal (it exited)
                    chunk = b""
                if not chunk:
                    break
                seen += chunk
                if b"PIN" in seen and seen.rstrip().endswith(b":"):
                    prompts.append(seen.decode(errors="replace").strip())
                    if not answers:
                        process.kill()
                        pytest.fail(f"`{' '.join(args)}` asked for a PIN once too often: "
                                    f"{prompts}", pytrace=False)
                    os.write(master, (answers.pop(0) + "\n").encode())
                    seen = b""
            returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(master)
        out.seek(0)
        err.seek(0)
        result = TtyRun(returncode, out.read().decode(), err.read().decode(), prompts)
    if expect_ok and (result.returncode != 0 or answers):
        pytest.fail(f"`{' '.join(args)}` exited {result.returncode}, PIN prompts {prompts}, "
                    f"unused PINs {answers}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}",
                    pytrace=False)
    if not expect_ok and result.returncode == 0:
        pytest.fail(f"`{' '.join(args)}` succeeded but should have failed\n{result.stdout}",
                    pytrace=False)
    return result


def token_info(t: Tools) -> tuple[set[str], str]:
    """fido2-token -I: the options (as printed, "noX" for false) and the whole output."""
    out = t.run("fido2-token", "-I", t.device).stdout
    options = re.search(r"^options: (.*)$", out, re.M)
    assert options, out
    return set(options.group(1).split(", ")), out


def test_large_blob_with_fido2_token(tools):
    """A resident credential with its largeBlobKey (fido2-cred -M -r -b), then fido2-token's
    large-blob commands with that key (-S -b, -G -b, -D -b): libfido2 encrypts the blob,
    builds and hashes the serialized array and writes it with an lbw token from the PIN."""
    t = tools()
    options, out = token_info(t)
    assert "largeBlobs" in options and re.search(r"^maxlargeblob: 4096$", out, re.M), out
    run_with_tty(t, "fido2-token", "-S", t.device, pins=[PIN, PIN])

    cdh = hashlib.sha256(os.urandom(32)).digest()
    param = t.write("lb.cred_param", [b64(cdh), RP_ID, "alice", b64(os.urandom(16))])
    made = run_with_tty(t, "fido2-cred", "-M", "-r", "-b", "-i", param, "-o", "lb.made",
                        t.device, "es256", pins=[PIN])
    assert len(made.prompts) == 1 and "Enter PIN" in made.prompts[0], made.prompts
    lines = t.read_lines("lb.made")
    # cdh, rp id, fmt, authdata, credential id, signature, largeBlobKey (no x5c: self).
    assert len(lines) == 7 and lines[2] == "packed", lines
    assert len(base64.b64decode(lines[6])) == 32
    key = t.write("lb.key", [lines[6]])

    blob = os.urandom(3000)
    (t.dir / "lb.blob").write_bytes(blob)
    run_with_tty(t, "fido2-token", "-S", "-b", "-k", key, "lb.blob", t.device, pins=[PIN])
    read = run_with_tty(t, "fido2-token", "-G", "-b", "-k", key, "lb.out", t.device, pins=[])
    assert read.prompts == [], "reading needs no PIN"
    assert (t.dir / "lb.out").read_bytes() == blob

    # Another credential's key finds nothing; deleting the blob leaves nothing to find.
    other = t.write("lb.other", [b64(os.urandom(32))])
    missing = run_with_tty(t, "fido2-token", "-G", "-b", "-k", other, "lb.none", t.device,
                           pins=[], expect_ok=False)
    assert "FIDO_ERR_NOTFOUND" in missing.stderr, missing.stderr
    run_with_tty(t, "fido2-token", "-D", "-b", "-k", key, t.device, pins=[PIN])
    gone = run_with_tty(t, "fido2-token", "-G", "-b", "-k", key, "lb.gone", t.device,
                        pins=[], expect_ok=False)
    assert "FIDO_ERR_NOTFOUND" in gone.stderr, gone.stderr
    # A wrong PIN writes nothing.
    wrong = run_with_tty(t, "fido2-token", "-S", "-b", "-k", key, "lb.blob", t.device,
                         pins=["0000"], expect_ok=False)
    assert "FIDO_ERR_PIN_INVALID" in wrong.stderr, wrong.stderr


def test_always_uv_toggle_with_fido2_token(tools):
    """fido2-token -S -u / -D -u (authenticatorConfig toggleAlwaysUv with an acfg token)."""
    t = tools()
    options, _ = token_info(t)
    assert {"noalwaysUv", "makeCredUvNotRqd", "authnrCfg"} <= options, options
    run_with_tty(t, "fido2-token", "-S", t.device, pins=[PIN, PIN])
    run_with_tty(t, "fido2-token", "-S", "-u", t.device, pins=[PIN])
    options, _ = token_info(t)
    assert {"alwaysUv", "nomakeCredUvNotRqd"} <= options, options
    # Even a non-resident credential needs the PIN now: fido2-cred tries without, is told
    # CTAP2_ERR_PUAT_REQUIRED, asks for the PIN, and the credential carries UV (-V -v).
    cdh = hashlib.sha256(os.urandom(32)).digest()
    param = t.write("uv.cred_param", [b64(cdh), RP_ID, "bob", b64(os.urandom(16))])
    made = run_with_tty(t, "fido2-cred", "-M", "-i", param, "-o", "uv.made", t.device, "es256",
                        pins=[PIN])
    assert len(made.prompts) == 1, made.prompts
    t.run("fido2-cred", "-V", "-v", "-i", "uv.made", "es256")
    # Already on: -S -u asks nothing. Then off again.
    run_with_tty(t, "fido2-token", "-S", "-u", t.device, pins=[])
    run_with_tty(t, "fido2-token", "-D", "-u", t.device, pins=[PIN])
    options, _ = token_info(t)
    assert {"noalwaysUv", "makeCredUvNotRqd"} <= options, options


def test_min_pin_length_with_fido2_token(tools):
    """fido2-token -S -l (authenticatorConfig setMinPINLength): the new minimum shows in
    fido2-token -I, forces a change of the shorter PIN, and can only go up."""
    t = tools()
    run_with_tty(t, "fido2-token", "-S", t.device, pins=[PIN, PIN])
    run_with_tty(t, "fido2-token", "-S", "-l", "6", t.device, pins=[PIN])
    _, out = token_info(t)
    assert re.search(r"^minpinlen: 6$", out, re.M), out
    assert re.search(r"^pin change required: true$", out, re.M), out
    assert re.search(r"^maxrpids in minpinlen: 8$", out, re.M), out
    lower = run_with_tty(t, "fido2-token", "-S", "-l", "5", t.device, pins=[PIN],
                         expect_ok=False)
    assert "FIDO_ERR_PIN_POLICY_VIOLATION" in lower.stderr, lower.stderr
    # fido2-token -C changes the PIN: a five-digit one is too short now.
    short = run_with_tty(t, "fido2-token", "-C", t.device, pins=[PIN, "12345", "12345"],
                         expect_ok=False)
    assert "FIDO_ERR_PIN_POLICY_VIOLATION" in short.stderr, short.stderr
    run_with_tty(t, "fido2-token", "-C", t.device, pins=[PIN, "123456", "123456"])
    _, out = token_info(t)
    assert re.search(r"^pin change required: false$", out, re.M), out
