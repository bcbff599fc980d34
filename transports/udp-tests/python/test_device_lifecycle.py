"""Devices that change under a relying party: synced, cloned, lost, found, removed, reset,
exported and imported — end to end over the UDP lane.

One `fidelio serve --ephemeral --browser` per test; its devices are made and changed with the
real `fidelio device` CLI (the control API where JSON is handier), each device is reached on its
own UDP lane by python-fido2 2.2.1 (an independent CTAP client), and every ceremony is checked by
py_webauthn 3.0.1 (an independent RP verifier) from the JSON a browser page would post: the
registration's public key, the counter as an RP stores it, the backup flags.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import time

import pytest
from fido2.client import ClientError
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from webauthn.helpers.exceptions import InvalidAuthenticationResponse
from webauthn.helpers.structs import AttestationFormat, CredentialDeviceType

from fidelio_devices import (
    EDDSA,
    ES256,
    SHORT_TIMEOUT,
    Gateway,
    RelyingParty,
    client,
)
from udp_hid import code_of, open_device


def b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def assert_silent(host: str, port: int) -> None:
    """Nothing answers CTAPHID INIT there: python-fido2 cannot even open the device."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        open_device(host, port, timeout=SHORT_TIMEOUT)
    assert time.monotonic() - started >= SHORT_TIMEOUT * 0.9


# ---------------------------------------------------------------------------------- clones
def test_synced_passkey_clone_signs_in_while_the_original_is_lost(fidelio_daemon):
    gw = Gateway(fidelio_daemon(gateway=True))
    phone = gw.new("phone", "--profile", "synced-passkey")
    assert phone["profile"] == "synced-passkey"
    rp = RelyingParty()

    # A passkey registered on the phone, over the phone's own UDP lane.
    dev = gw.open("phone", timeout=SHORT_TIMEOUT)
    alice = rp.register(client(dev), "alice@example.com", resident=True)
    assert alice.verified.credential_backed_up is True
    assert alice.verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    assert alice.verified.sign_count == 0
    assert alice.verified.fmt == AttestationFormat.NONE  # the profile's attestation

    # `device clone`: a second phone, on a UDP port of its own, with the same credential.
    clone = gw.json("clone", "phone", "--id", "phone2")
    assert clone["authenticatorId"] == "phone2" and clone["profile"] == "synced-passkey"
    assert clone["udp"] != phone["udp"]
    [original] = gw.credentials("phone")
    [copied] = gw.credentials("phone2")
    assert b64url(copied["credentialId"]) == alice.id
    assert copied["privateKey"] == original["privateKey"]

    # The first phone is lost: its lane answers nothing, to a new client or to one that was
    # already talking to it.
    lost = gw.json("unplug", "phone")
    assert lost["plugged"] is False
    assert {d["authenticatorId"]: d["plugged"] for d in gw.json("list")} == {
        "default": True,
        "phone": False,
        "phone2": True,
    }
    assert_silent(*gw.udp("phone"))
    with pytest.raises(TimeoutError):
        rp.login(client(dev), alice, discoverable=True)
    dev.close()

    # The clone signs in with the passkey: same key (py_webauthn checks the signature with the
    # public key the RP stored at registration), BE and BS set, counter still 0.
    login = rp.login(client(gw.open("phone2")), alice, discoverable=True)
    assert login.auth_data.is_backup_eligible() and login.auth_data.is_backed_up()
    assert login.verified.credential_backed_up is True
    assert login.verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    assert login.verified.new_sign_count == 0

    # Found again: `device plug`, and the first phone signs in too.
    assert gw.json("plug", "phone")["plugged"] is True
    login = rp.login(client(gw.open("phone")), alice, discoverable=True)
    assert login.auth_data.is_backed_up()


def test_cloned_security_key_is_caught_by_the_counter_check(fidelio_daemon):
    gw = Gateway(fidelio_daemon(gateway=True))
    gw.new("key", "--profile", "security-key")
    rp = RelyingParty()
    key = client(gw.open("key"))
    # A server-side (non-discoverable) credential: the clone must take it through
    # allowCredentials too.
    bob = rp.register(key, "bob@example.com", resident=False)
    assert bob.verified.credential_backed_up is False
    assert bob.verified.credential_device_type == CredentialDeviceType.SINGLE_DEVICE
    assert bob.verified.fmt == AttestationFormat.PACKED
    at_registration = bob.sign_count
    assert at_registration > 0  # one global counter, already moved by the registration

    gw.run("clone", "key", "--id", "key-copy")

    # The original goes on signing; the RP accepts each and stores the counter.
    seen = []
    for _ in range(2):
        seen.append(rp.login(key, bob).verified.new_sign_count)
    assert seen[0] > at_registration and seen[1] > seen[0]
    assert bob.sign_count == seen[1]

    # The clone resumes from the counter the original had when it was copied, so its
    # assertion is not above what the RP last saw: py_webauthn's counter check rejects it.
    copy = client(gw.open("key-copy"))
    options, [response] = rp.assert_with(copy, [bob])
    clone_count = response.response.authenticator_data.counter
    assert at_registration < clone_count <= bob.sign_count
    with pytest.raises(InvalidAuthenticationResponse, match="sign count"):
        rp.verify(options, response, bob)
    assert bob.sign_count == seen[1]  # nothing was updated

    # It is the same key: an RP record as it was at registration accepts that assertion.
    fresh = rp.verify(options, response, bob, sign_count=at_registration, update=False)
    assert fresh.verified.new_sign_count == clone_count
    assert fresh.verified.credential_backed_up is False


# ------------------------------------------------------------------------------------ sync
def test_sync_gives_each_device_the_other_ones_credentials(fidelio_daemon):
    gw = Gateway(fidelio_daemon(gateway=True))
    gw.new("laptop", "--profile", "synced-passkey")
    gw.new("tablet", "--profile", "synced-passkey")
    rp = RelyingParty()
    alice = rp.register(client(gw.open("laptop")), "alice@example.com", resident=True)
    carol = rp.register(client(gw.open("tablet")), "carol@example.com", resident=True)
    for credential in (alice, carol):
        assert credential.verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE

    # Before: each device holds only its own.
    with pytest.raises(ClientError) as missing:
        rp.login(client(gw.open("laptop")), carol)
    assert code_of(missing.value) == CtapError.ERR.NO_CREDENTIALS

    summary = gw.run("sync", "laptop", "tablet").stdout
    assert "laptop: +1" in summary and "tablet: +1" in summary
    # Once is enough: a second sync copies nothing.
    assert gw.json("sync", "laptop", "tablet") == {"copied": {"laptop": 0, "tablet": 0}}

    for device_id in ("laptop", "tablet"):
        fido = client(gw.open(device_id))
        for credential in (alice, carol):
            login = rp.login(fido, credential)
            assert login.verified.credential_backed_up is True
            assert login.verified.new_sign_count == 0
        # Without allowCredentials the device discovers both accounts.
        options, responses = rp.assert_with(fido, None)
        by_id = {c.id: c for c in (alice, carol)}
        assert sorted(r.raw_id for r in responses) == sorted(by_id)
        for response in responses:
            credential = by_id[response.raw_id]
            assert response.response.user_handle == credential.user_id
            rp.verify(options, response, credential)


# -------------------------------------------------------------- list, show, prefer, new, rm
def test_list_show_prefer(fidelio_daemon):
    daemon = fidelio_daemon(gateway=True)
    gw = Gateway(daemon)
    gw.new("a")
    gw.new("b", "--profile", "synced-passkey")
    listed = gw.json("list")
    assert [d["authenticatorId"] for d in listed] == ["default", "a", "b"]
    assert [d["preferred"] for d in listed] == [True, False, False]
    # Every device has its own lane, and the default one is where the daemon was told.
    ports = [int(d["udp"].rsplit(":", 1)[1]) for d in listed]
    assert ports[0] == daemon.port and len(set(ports)) == 3
    for device_id in ("a", "b"):
        assert gw.show(device_id) == next(d for d in listed if d["authenticatorId"] == device_id)

    # Each lane reaches its own device: getInfo over b's port says transports hybrid/internal.
    dev = gw.open("b")
    assert "usb" not in Ctap2(dev).get_info().transports
    dev.close()

    text = gw.run("list").stdout
    assert "b" in text and "synced-passkey" in text and "plugged" in text

    gw.run("prefer", "b")
    assert [d["preferred"] for d in gw.json("list")] == [False, False, True]
    refused = gw.run("prefer", "nobody", check=False)
    assert refused.returncode != 0 and "nobody" in refused.stderr
    refused = gw.run("show", "nobody", check=False)
    assert refused.returncode != 0 and "nobody" in refused.stderr


def test_removed_device_closes_its_lane(fidelio_daemon):
    gw = Gateway(fidelio_daemon(gateway=True))
    gw.new("spare")
    rp = RelyingParty()
    host, port = gw.udp("spare")
    dev = gw.open("spare", timeout=SHORT_TIMEOUT)
    rp.register(client(dev), "dave@example.com", resident=True)
    dev.close()

    assert gw.json("rm", "spare") == {"authenticatorId": "spare", "removed": True}
    assert "spare" not in gw.ids()
    assert gw.run("show", "spare", check=False).returncode != 0
    # The port is closed, not merely silent: the kernel refuses the datagram, and the port is
    # free to bind again.
    with pytest.raises(ConnectionRefusedError):
        open_device(host, port, timeout=SHORT_TIMEOUT)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))


def test_default_device_cannot_be_removed(fidelio_daemon):
    daemon = fidelio_daemon(gateway=True)
    gw = Gateway(daemon)
    refused = gw.run("rm", "default", check=False)
    assert refused.returncode != 0
    assert "cannot be removed" in refused.stderr
    assert "default" in gw.ids()
    # And it still answers, with its credentials.
    rp = RelyingParty()
    dev = open_device(daemon.host, daemon.port)
    erin = rp.register(client(dev), "erin@example.com", resident=True)
    rp.login(client(dev), erin, discoverable=True)


def test_reset_wipes_the_device(fidelio_daemon):
    gw = Gateway(fidelio_daemon(gateway=True))
    gw.new("key")
    gw.new("other")
    rp = RelyingParty()
    fido = client(gw.open("key"))
    frank = rp.register(fido, "frank@example.com", resident=True)
    grace = rp.register(fido, "grace@example.com", resident=False)
    other = rp.register(client(gw.open("other")), "heidi@example.com", resident=True)
    assert len(gw.credentials("key")) == 2

    assert gw.run("reset", "key").stdout.strip() == "key: wiped"

    assert gw.credentials("key") == []
    for credential, discoverable in ((frank, True), (frank, False), (grace, False)):
        with pytest.raises(ClientError) as error:
            rp.login(fido, credential, discoverable=discoverable)
        assert error.value.code == ClientError.ERR.DEVICE_INELIGIBLE
        assert code_of(error.value) == CtapError.ERR.NO_CREDENTIALS
    # Only that device: the other one keeps its passkey.
    rp.login(client(gw.open("other")), other, discoverable=True)
    # The wiped key is usable again.
    ivan = rp.register(fido, "ivan@example.com", resident=True)
    rp.login(fido, ivan, discoverable=True)


# -------------------------------------------------------------------------- export/import
def make_source(gw: Gateway, rp: RelyingParty):
    """A security key with a discoverable ES256, a discoverable EdDSA and a server-side ES256
    credential, each of which has signed after its registration."""
    gw.new("source")
    fido = client(gw.open("source"))
    alice = rp.register(fido, "alice@example.com", resident=True, algs=(ES256,))
    bob = rp.register(fido, "bob@example.com", resident=True, algs=(EDDSA,))
    carol = rp.register(fido, "carol@example.com", resident=False, algs=(ES256,))
    assert (alice.alg, bob.alg, carol.alg) == (ES256, EDDSA, ES256)
    for credential in (alice, bob, carol):
        rp.login(fido, credential)
    return alice, bob, carol


@pytest.mark.parametrize("fmt", ["cxf", "webdriver", "cdp", "playwright"])
def test_export_import_round_trip(fidelio_daemon, tmp_path, fmt):
    gw = Gateway(fidelio_daemon(gateway=True))
    rp = RelyingParty()
    alice, bob, carol = make_source(gw, rp)
    source_keys = {b64url(c["credentialId"]): c for c in gw.credentials("source")}
    assert set(source_keys) == {alice.id, bob.id, carol.id}

    out = tmp_path / f"export.{fmt}.json"
    exported = gw.run("export", "source", "--format", fmt, "--out", out)
    assert "PRIVATE KEYS" in exported.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    document = out.read_text()

    # Never over an existing file without --force.
    refused = gw.run("export", "source", "--format", fmt, "--out", out, check=False)
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert out.read_text() == document
    gw.run("export", "source", "--format", fmt, "--out", out, "--force")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600

    if fmt == "playwright":
        # Playwright signs with ES256 only: the Ed25519 passkey is left out, with a warning.
        assert "Ed25519" in exported.stderr and "bob@example.com" in exported.stderr
        expected = (alice, carol)
    else:
        expected = (alice, bob, carol)
    if fmt == "cdp":
        # CDP's binary type: standard base64, the same key bytes.
        for entry in json.loads(document):
            key = base64.b64decode(entry["privateKey"], validate=True)
            assert key == b64url(source_keys[b64url(entry["credentialId"])]["privateKey"])

    gw.new("target", "--profile", "security-key")
    imported = gw.json("import", "target", out)
    assert imported["imported"] == len(expected)
    assert imported["format"] == ("webdriver" if fmt == "cdp" else fmt)

    # The control API: each private key came back byte for byte.
    target_keys = {b64url(c["credentialId"]): c for c in gw.credentials("target")}
    assert set(target_keys) == {c.id for c in expected}
    for credential in expected:
        assert b64url(target_keys[credential.id]["privateKey"]) == b64url(
            source_keys[credential.id]["privateKey"]
        )

    # A login on the new device, checked against the ORIGINAL registration's public key.
    fido = client(gw.open("target"))
    for credential in expected:
        if fmt == "playwright":
            # No counter in Playwright's shape: it restarts at 0, below what the RP stored —
            # py_webauthn's counter check says so, and the signature itself verifies.
            options, [response] = rp.assert_with(fido, [credential])
            assert response.response.authenticator_data.counter < credential.sign_count
            with pytest.raises(InvalidAuthenticationResponse, match="sign count"):
                rp.verify(options, response, credential, update=False)
            rp.verify(options, response, credential, sign_count=0)
        else:
            # The counter travelled with the key: the RP's stored value is respected.
            before = credential.sign_count
            login = rp.login(fido, credential)
            assert login.verified.new_sign_count > before
            assert login.verified.credential_backed_up is False


def test_strict_cxf(fidelio_daemon, tmp_path):
    gw = Gateway(fidelio_daemon(gateway=True))
    rp = RelyingParty()
    gw.new("key", "--profile", "security-key")
    gw.new("phone", "--profile", "synced-passkey")
    key = client(gw.open("key"))
    judy = rp.register(key, "judy@example.com", resident=True)
    rp.login(key, judy)
    mallory = rp.register(client(gw.open("phone")), "mallory@example.com", resident=True)
    assert [c["signCount"] for c in gw.credentials("key")] == [judy.sign_count]
    assert judy.sign_count > 0

    # Non-strict CXF keeps it, with Fidelio's extension for the counter.
    gw.run("export", "key", "--out", tmp_path / "loose.json")
    assert "dev.fidelio.credential" in (tmp_path / "loose.json").read_text()

    # Strict: a passkey that has signed (counter > 0) is left out, and said so.
    strict = gw.run("export", "key", "--strict", "--out", tmp_path / "key.json")
    assert "left out" in strict.stderr and "judy@example.com" in strict.stderr
    document = json.loads((tmp_path / "key.json").read_text())
    assert document["accounts"][0]["items"] == []

    # Strict, a synced passkey (counter 0): kept, and the file is plain CXF.
    strict = gw.run("export", "phone", "--strict", "--out", tmp_path / "phone.json")
    assert "left out" not in strict.stderr
    text = (tmp_path / "phone.json").read_text()
    assert "dev.fidelio" not in text
    [item] = json.loads(text)["accounts"][0]["items"]
    [passkey] = item["credentials"]
    assert passkey["type"] == "passkey" and b64url(passkey["credentialId"]) == mallory.id

    # Imported elsewhere (CXF defaults: a synced passkey), it signs in.
    gw.new("new-phone", "--profile", "synced-passkey")
    assert gw.json("import", "new-phone", tmp_path / "phone.json")["imported"] == 1
    login = rp.login(client(gw.open("new-phone")), mallory, discoverable=True)
    assert login.verified.credential_backed_up is True


# ---------------------------------------------------------------- profiles and overrides
def test_platform_profile(fidelio_daemon):
    gw = Gateway(fidelio_daemon(gateway=True))
    made = gw.new("laptop", "--profile", "platform")
    assert made["properties"]["transport"] == "internal"
    assert made["properties"]["hasUserVerification"] is True
    info = Ctap2(gw.open("laptop")).get_info()
    assert info.options.get("plat") is True
    assert info.options.get("uv") is True
    assert info.transports == ["internal"]
    # The default device stays a roaming key.
    default = Ctap2(gw.open("default")).get_info()
    assert default.options.get("plat") is False and "uv" not in default.options
    assert default.transports == ["usb"]


def test_overrides_aaguid_algorithm_counter(fidelio_daemon):
    aaguid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    gw = Gateway(fidelio_daemon(gateway=True))
    gw.new(
        "custom", "--aaguid", aaguid, "--algorithms", "eddsa", "--counter", "per-credential"
    )
    fido = client(gw.open("custom"))
    rp = RelyingParty()
    # The RP offers ES256 first; the device can only do EdDSA.
    first = rp.register(fido, "kim@example.com", resident=True, algs=(ES256, EDDSA))
    second = rp.register(fido, "lee@example.com", resident=True, algs=(ES256, EDDSA))
    for credential in (first, second):
        assert credential.verified.aaguid == aaguid
        assert credential.alg == EDDSA
        assert credential.sign_count == 0
    with pytest.raises(ClientError) as refused:
        rp.register(fido, "max@example.com", algs=(ES256,))
    assert code_of(refused.value) == CtapError.ERR.UNSUPPORTED_ALGORITHM

    # One counter per credential: in one discoverable ceremony (no preflight), both
    # credentials answer with their own first count, 1; then both 2.
    by_id = {c.id: c for c in (first, second)}
    for expected in (1, 2):
        options, responses = rp.assert_with(fido, None)
        assert sorted(r.raw_id for r in responses) == sorted(by_id)
        for response in responses:
            login = rp.verify(options, response, by_id[response.raw_id])
            assert login.verified.new_sign_count == expected
