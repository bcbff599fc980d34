"""Fault injection seen from outside: each fault kind of the control API (docs/control-api.md,
"Fault injection"), injected with `fidelio device fault ID add '<json>'` or the API, and what
python-fido2 2.2.1 (the client, over the device's UDP lane) and py_webauthn 3.0.1 (the RP)
make of it.

Python-fido2's client checks allowCredentials with a silent (up: false) getAssertion before the
real one; that preflight is a signature too, so faults that count signed operations are tested
with discoverable sign-ins (no preflight) wherever a count matters.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fido2 import cbor
from fido2.client import ClientError, UserInteraction
from fido2.ctap import STATUS, CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin
from fido2.hid import CTAPHID
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import AttestationFormat, UserVerificationRequirement

from conftest import fidelio_bin
from fidelio_devices import (
    EDDSA,
    ES256,
    RP_ID,
    SHORT_TIMEOUT,
    ApiError,
    Gateway,
    RelyingParty,
    client,
    signature_verifies,
)
from udp_hid import code_of

REQUIRED = UserVerificationRequirement.REQUIRED


def security_key(fidelio_daemon, *serve_args: str, device_id: str = "key"):
    """A daemon with its gateway, one added security key, and that key's client."""
    gw = Gateway(fidelio_daemon(*serve_args, gateway=True))
    gw.new(device_id, "--profile", "security-key")
    return gw, client(gw.open(device_id))


def add(gw: Gateway, device_id: str, fault: dict) -> int:
    """Through the CLI: `fidelio device fault ID add '<json>'`."""
    [fault_id] = gw.json("fault", device_id, "add", json.dumps(fault))["faultIds"]
    return fault_id


# -------------------------------------------------------------------------------- presence
def test_presence_deny_refuses_the_next_touch_only(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()
    fault_id = add(gw, "key", {"type": "presence", "outcome": "deny", "count": 1})
    [listed] = gw.json("fault", "key", "list")["faults"]
    assert (listed["faultId"], listed["remaining"], listed["fired"]) == (fault_id, 1, 0)

    with pytest.raises(ClientError) as denied:
        rp.register(fido, "alice@example.com", resident=True)
    assert code_of(denied.value) == CtapError.ERR.OPERATION_DENIED
    assert gw.credentials("key") == []  # nothing was made
    assert gw.faults("key") == []  # used up

    alice = rp.register(fido, "alice@example.com", resident=True)

    # A sign-in with allowCredentials: python-fido2's silent preflight (up: false) asks
    # nobody, so it passes and the touch of the real assertion is the one refused.
    add(gw, "key", {"type": "presence", "outcome": "deny", "count": 1})
    with pytest.raises(ClientError) as denied:
        rp.login(fido, alice)
    assert code_of(denied.value) == CtapError.ERR.OPERATION_DENIED
    rp.login(fido, alice)


def test_presence_timeout(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True)

    class Prompts(UserInteraction):
        count = 0

        def prompt_up(self):
            Prompts.count += 1

    add(gw, "key", {"type": "presence", "outcome": "timeout", "ms": 300, "count": 1})
    waiting = client(gw.open("key"), Prompts())
    started = time.monotonic()
    with pytest.raises(ClientError) as timed_out:
        rp.login(waiting, alice, discoverable=True)
    assert time.monotonic() - started >= 0.3
    assert code_of(timed_out.value) == CtapError.ERR.USER_ACTION_TIMEOUT
    assert timed_out.value.code == ClientError.ERR.TIMEOUT
    assert Prompts.count >= 1  # KEEPALIVE UPNEEDED reached the client: "touch your key"
    rp.login(fido, alice, discoverable=True)


# -------------------------------------------------------------------------------------- uv
def test_uv_fail_on_a_platform_authenticator(fidelio_daemon):
    gw = Gateway(fidelio_daemon(gateway=True))
    gw.new("laptop", "--profile", "platform")
    dev = gw.open("laptop")
    fido = client(dev)
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True, uv=REQUIRED, require_uv=True)
    assert alice.verified.user_verified is True
    retries = ClientPin(Ctap2(dev)).get_uv_retries()

    gw.add_fault("laptop", {"type": "uv", "outcome": "fail", "count": 1})
    with pytest.raises(ClientError) as failed:
        rp.login(fido, alice, uv=REQUIRED, require_uv=True)
    assert code_of(failed.value) == CtapError.ERR.UV_INVALID
    # As on a real device, the failed attempt spent one of the retries.
    assert ClientPin(Ctap2(dev)).get_uv_retries() == retries - 1

    login = rp.login(fido, alice, uv=REQUIRED, require_uv=True)
    assert login.verified.user_verified is True


# ---------------------------------------------------------------------------------- status
def test_status_override(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True)
    rp.login(fido, alice, discoverable=True)
    before = alice.sign_count

    # By name through the CLI, then as a byte (a string and a number) through the API.
    add(gw, "key", {"type": "status", "command": "getAssertion", "status": "CTAP2_ERR_PIN_BLOCKED",
                    "count": 1})
    with pytest.raises(ClientError) as blocked:
        rp.login(fido, alice, discoverable=True)
    assert code_of(blocked.value) == CtapError.ERR.PIN_BLOCKED == 0x32
    ctap2 = Ctap2(gw.open("key"))
    for status in ("0x32", 50):
        gw.add_fault("key", {"type": "status", "command": "getAssertion", "status": status,
                             "count": 1})
        with pytest.raises(CtapError) as raw:
            ctap2.get_assertion(RP_ID, b"\0" * 32)
        assert raw.value.code == 0x32
    # The command never ran: the counter moved by exactly one signature since.
    assert rp.login(fido, alice, discoverable=True).verified.new_sign_count == before + 1

    # On makeCredential: the answer is the status, and nothing is stored.
    gw.add_fault("key", {"type": "status", "command": "makeCredential",
                         "status": "CTAP2_ERR_KEY_STORE_FULL", "count": 1})
    with pytest.raises(ClientError) as full:
        rp.register(fido, "bob@example.com", resident=True)
    assert code_of(full.value) == CtapError.ERR.KEY_STORE_FULL
    assert len(gw.credentials("key")) == 1


# ------------------------------------------------------------------------------- signature
@pytest.mark.parametrize("alg", [ES256, EDDSA], ids=["es256", "eddsa"])
def test_signature_fault_is_rejected_by_the_rp(fidelio_daemon, alg):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()

    # Registration: the packed self-attestation signature does not verify. (A server-side
    # credential, so that it is not discovered below.)
    add(gw, "key", {"type": "signature", "command": "makeCredential", "count": 1})
    with pytest.raises(InvalidRegistrationResponse, match="signature"):
        rp.register(fido, "alice@example.com", resident=False, algs=(alg,))

    alice = rp.register(fido, "alice@example.com", resident=True, algs=(alg,))
    add(gw, "key", {"type": "signature", "command": "getAssertion", "count": 1})
    options, [response] = rp.assert_with(fido, None)
    with pytest.raises(InvalidAuthenticationResponse, match="signature"):
        rp.verify(options, response, alice)
    # Well-formed all the same: DER for ES256, 64 bytes for EdDSA.
    signature = response.response.signature
    if alg == ES256:
        decode_dss_signature(signature)
    else:
        assert len(signature) == 64
    assert not signature_verifies(response, alice)
    # count 1: the next one is fine.
    rp.login(fido, alice, discoverable=True)


# ----------------------------------------------------------------------------------- flags
def test_flags_up_false_is_signed_and_rejected(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True)
    gw.add_fault("key", {"type": "flags", "up": False})
    options, [response] = rp.assert_with(fido, [alice])
    assert not response.response.authenticator_data.is_user_present()
    with pytest.raises(InvalidAuthenticationResponse, match="User was not present"):
        rp.verify(options, response, alice)
    # The device signed the wrong flags consistently: the signature itself verifies.
    assert signature_verifies(response, alice)
    assert gw.json("fault", "key", "clear") == {"removed": 1}
    assert rp.login(fido, alice).auth_data.is_user_present()


def test_flags_uv_true_lies_to_the_rp(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()
    info = Ctap2(gw.open("key")).get_info()
    assert "uv" not in info.options and info.options.get("clientPin") is False  # no UV, no PIN
    alice = rp.register(fido, "alice@example.com", resident=True)
    assert rp.login(fido, alice).verified.user_verified is False

    gw.add_fault("key", {"type": "flags", "uv": True})
    login = rp.login(fido, alice)  # UV discouraged; no PIN or UV was done
    assert login.verified.user_verified is True
    # It even satisfies an RP that requires user verification.
    rp.login(fido, alice, require_uv=True)


# --------------------------------------------------------------------------------- counter
def test_counter_rollback_is_caught(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True)
    for _ in range(3):
        rp.login(fido, alice, discoverable=True)
    stored = alice.sign_count

    add(gw, "key", {"type": "counter", "rollback": 3, "count": 1})
    options, [response] = rp.assert_with(fido, None)
    assert response.response.authenticator_data.counter == stored + 1 - 3
    with pytest.raises(InvalidAuthenticationResponse, match="sign count"):
        rp.verify(options, response, alice)
    assert signature_verifies(response, alice)
    # The device's own counter went on: the next signature jumps back above the RP's value.
    assert rp.login(fido, alice, discoverable=True).verified.new_sign_count == stored + 2


# ----------------------------------------------------------------------------- attestation
def attestation_statement(registered) -> tuple[str, dict]:
    obj = cbor.decode(registered.verified.attestation_object)
    return obj["fmt"], obj["attStmt"]


def attestation_ca(directory: Path) -> Path:
    """`fidelio attestation init DIR`: a root CA and a batch key, for `serve --attestation`."""
    subprocess.run(
        [fidelio_bin(), "attestation", "init", str(directory)], check=True, capture_output=True
    )
    return directory


def test_attestation_modes(fidelio_daemon, tmp_path: Path):
    # A daemon with a real attestation CA: its default device attests with the batch key.
    ca_dir = attestation_ca(tmp_path / "attestation")
    root = (ca_dir / "ca-cert.pem").read_bytes()
    roots = {AttestationFormat.PACKED: [root]}
    root_subject = x509.load_pem_x509_certificate(root).subject

    gw = Gateway(fidelio_daemon("--attestation", f"batch:{ca_dir}", gateway=True))
    gw.new("key", "--profile", "security-key")
    default = client(gw.open("default"))
    key = client(gw.open("key"))
    rp = RelyingParty()

    # Control: the real chain verifies against the root.
    batch = rp.register(default, "batch@example.com", roots=roots)
    fmt, statement = attestation_statement(batch)
    assert fmt == "packed" and len(statement["x5c"]) >= 1
    assert x509.load_der_x509_certificate(statement["x5c"][0]).issuer == root_subject

    add(gw, "default", {"type": "attestation", "mode": "none", "count": 1})
    none = rp.register(default, "none@example.com", roots=roots)
    assert none.verified.fmt == AttestationFormat.NONE
    assert attestation_statement(none) == ("none", {})

    add(gw, "default", {"type": "attestation", "mode": "self", "count": 1})
    self_attested = rp.register(default, "self@example.com", roots=roots)
    assert self_attested.verified.fmt == AttestationFormat.PACKED
    fmt, statement = attestation_statement(self_attested)
    assert fmt == "packed" and "x5c" not in statement and statement["alg"] == self_attested.alg

    for device_id, fido in (("default", default), ("key", key)):
        add(gw, device_id, {"type": "attestation", "mode": "untrusted", "count": 2})
        # Signed correctly by a certificate in x5c: an RP that trusts no root accepts it...
        untrusted = rp.register(fido, f"untrusted-{device_id}@example.com")
        assert untrusted.verified.fmt == AttestationFormat.PACKED
        fmt, statement = attestation_statement(untrusted)
        assert fmt == "packed" and len(statement["x5c"]) >= 1
        assert x509.load_der_x509_certificate(statement["x5c"][0]).issuer != root_subject
        # ...but it does not chain to the configured root.
        with pytest.raises(InvalidRegistrationResponse, match="(?i)chain"):
            rp.register(fido, f"untrusted2-{device_id}@example.com", roots=roots)
        assert gw.faults(device_id) == []


def test_attestation_batch_fault_on_an_added_device(fidelio_daemon, tmp_path: Path):
    ca_dir = attestation_ca(tmp_path / "attestation")
    gw = Gateway(fidelio_daemon("--attestation", f"batch:{ca_dir}", gateway=True))
    gw.new("phone", "--profile", "synced-passkey")
    # docs/control-api.md: "packed with the daemon's configured batch key and chain
    # (fidelio serve --attestation batch:DIR); without one the fault is refused with 409".
    gw.add_fault("phone", {"type": "attestation", "mode": "batch", "count": 1})
    roots = {AttestationFormat.PACKED: [(ca_dir / "ca-cert.pem").read_bytes()]}
    registered = RelyingParty().register(client(gw.open("phone")), "a@example.com", roots=roots)
    assert registered.verified.fmt == AttestationFormat.PACKED


# ----------------------------------------------------------------------------------- delay
def test_delay(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True)

    add(gw, "key", {"type": "delay", "ms": 500, "command": "getAssertion", "count": 1})
    started = time.monotonic()
    login = rp.login(fido, alice, discoverable=True)
    assert time.monotonic() - started >= 0.5
    assert login.verified.new_sign_count > 0

    # A slow device keeps the client informed: KEEPALIVE PROCESSING every 100 ms meanwhile
    # (python-fido2 reports a status once; the reports themselves are counted here).
    dev = gw.open("key")
    keepalives = []
    read_packet = dev._connection.read_packet

    def counting_read_packet():
        packet = read_packet()
        if packet[4] == 0x80 | CTAPHID.KEEPALIVE:
            keepalives.append(packet[7])
        return packet

    dev._connection.read_packet = counting_read_packet
    statuses = []
    gw.add_fault("key", {"type": "delay", "ms": 500, "command": "getAssertion", "count": 1})
    Ctap2(dev).get_assertion(RP_ID, b"\0" * 32, on_keepalive=statuses.append)
    assert statuses == [STATUS.PROCESSING]
    assert len(keepalives) >= 3 and set(keepalives) == {STATUS.PROCESSING}


# ------------------------------------------------------------------------------------- hid
def test_hid_dropped_reports(fidelio_daemon):
    gw = Gateway(fidelio_daemon(gateway=True))
    gw.new("key", "--profile", "security-key")
    dev = gw.open("key", timeout=SHORT_TIMEOUT)
    fido = client(dev)
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True)

    # A one-report answer lost (with any KEEPALIVE a slow machine might send before it): the
    # client times out; the same channel's next request works.
    ctap2 = Ctap2(dev)
    add(gw, "key", {"type": "hid", "dropReports": 3, "command": "selection", "count": 1})
    with pytest.raises(TimeoutError):
        ctap2.selection()
    ctap2.selection()

    # A whole assertion lost (every report of that request): the sign-in times out, the
    # retry succeeds and verifies.
    add(gw, "key", {"type": "hid", "dropReports": 64, "command": "getAssertion", "count": 1})
    with pytest.raises(TimeoutError):
        rp.login(fido, alice, discoverable=True)
    rp.login(fido, alice, discoverable=True)
    assert gw.faults("key") == []


def test_hid_late_reports(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True)
    add(gw, "key", {"type": "hid", "delayMs": 300, "command": "getAssertion", "count": 1})
    started = time.monotonic()
    rp.login(fido, alice, discoverable=True)
    assert time.monotonic() - started >= 0.3


# ------------------------------------------------------------------------- count and life
def test_count_list_rm_clear_and_events(fidelio_daemon):
    gw, fido = security_key(fidelio_daemon)
    gw.new("other", "--profile", "security-key")
    rp = RelyingParty()
    alice = rp.register(fido, "alice@example.com", resident=True)
    after = gw.events()[-1]["seq"]

    # count 2: exactly two sign-ins are hit, and `fault list` counts down.
    twice = add(gw, "key", {"type": "signature", "command": "getAssertion", "count": 2})
    forever = add(gw, "key", {"type": "status", "command": "getNextAssertion",
                              "status": "CTAP2_ERR_NOT_ALLOWED"})
    spare = add(gw, "key", {"type": "presence", "outcome": "deny"})
    gw.run("fault", "key", "rm", str(spare))
    listed = {f["faultId"]: f for f in gw.json("fault", "key", "list")["faults"]}
    assert set(listed) == {twice, forever}
    assert (listed[twice]["remaining"], listed[twice]["fired"]) == (2, 0)
    assert listed[forever]["remaining"] is None

    for remaining in (1, 0):
        options, [response] = rp.assert_with(fido, None)
        with pytest.raises(InvalidAuthenticationResponse, match="signature"):
            rp.verify(options, response, alice)
        listed = {f["faultId"]: f for f in gw.json("fault", "key", "list")["faults"]}
        if remaining:
            assert (listed[twice]["remaining"], listed[twice]["fired"]) == (1, 1)
        else:
            assert twice not in listed
    rp.login(fido, alice, discoverable=True)

    # Each time a fault took effect there was a faultInjected event, before the assertion's.
    events = [e for e in gw.events(after) if e["authenticatorId"] == "key"]
    injected = [e for e in events if e["type"] == "faultInjected"]
    assert [(e["faultId"], e["remaining"]) for e in injected] == [(twice, 1), (twice, 0)]
    for event in injected:
        following = events[events.index(event) + 1]
        assert following["type"] == "credentialAsserted" and following["seq"] == event["seq"] + 1

    # Faults are the device's own: the other device is untouched by `forever`...
    other = client(gw.open("other"))
    bobs = {
        c.id: c for c in (rp.register(other, f"bob{i}@example.com", resident=True) for i in (1, 2))
    }
    options, responses = rp.assert_with(other, None)
    assert sorted(r.raw_id for r in responses) == sorted(bobs)  # getNextAssertion worked there
    for response in responses:
        rp.verify(options, response, bobs[response.raw_id])
    # ...which stays on "key" until `fault clear`.
    rp.register(fido, "carol@example.com", resident=True)
    with pytest.raises(ClientError) as not_allowed:
        rp.assert_with(fido, None)
    assert code_of(not_allowed.value) == CtapError.ERR.NOT_ALLOWED
    assert gw.run("fault", "key", "clear").returncode == 0
    assert gw.json("fault", "key", "list") == {"faults": []}
    _, responses = rp.assert_with(fido, None)
    assert len(responses) == 2


def test_fault_errors(fidelio_daemon):
    gw, _ = security_key(fidelio_daemon)
    refused = gw.run("fault", "key", "add", '{"type": "signature", "comand": "getInfo"}',
                     check=False)
    assert refused.returncode != 0  # a typo is refused, not silently ignored
    with pytest.raises(ApiError) as error:
        gw.add_fault("key", {"type": "signature", "command": "getInfo"})
    assert error.value.status == 400
    with pytest.raises(ApiError) as error:
        gw.add_fault("nobody", {"type": "signature"})
    assert error.value.status == 404
    assert gw.faults("key") == []
