"""Every ceremony `fidelio demo --json` produces is checked by an RP library we did not write:
py_webauthn (PyPI `webauthn`), which parses the attestation object, checks the packed
statement (self and x5c, with the certificate requirements), and verifies the assertion."""

import base64
import itertools
import json
import os
import subprocess
import tempfile

import pytest
from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers.structs import AttestationFormat

FIDELIO = os.environ.get("FIDELIO_BIN", "fidelio")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def demo(*args: str) -> dict:
    out = subprocess.run(
        [FIDELIO, "demo", "--json", *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def verify(result: dict, root_pems=None):
    rp = result["rp"]
    roots = None
    if root_pems:
        roots = {AttestationFormat.PACKED: [pem.encode() for pem in root_pems]}
    registration = verify_registration_response(
        credential=result["registration"]["response"],
        expected_challenge=b64d(result["registration"]["challenge"]),
        expected_rp_id=rp["id"],
        expected_origin=rp["origin"],
        pem_root_certs_bytes_by_fmt=roots,
    )
    authentication = verify_authentication_response(
        credential=result["authentication"]["response"],
        expected_challenge=b64d(result["authentication"]["challenge"]),
        expected_rp_id=rp["id"],
        expected_origin=rp["origin"],
        credential_public_key=registration.credential_public_key,
        credential_current_sign_count=registration.sign_count,
    )
    return registration, authentication


MATRIX = list(
    itertools.product(
        ["es256", "eddsa"],
        ["self", "none", "batch"],
        [False, True],
        ["security-key", "synced-passkey", "platform"],
    )
)


@pytest.mark.parametrize("alg,attestation,resident,profile", MATRIX)
def test_ceremony_verifies(alg, attestation, resident, profile):
    args = ["--alg", alg, "--attestation", attestation, "--profile", profile, "--seed", "11"]
    if resident:
        args.append("--resident")
    result = demo(*args)
    roots = [result["attestation_root_pem"]] if attestation == "batch" else None
    registration, authentication = verify(result, roots)

    expected_fmt = {"self": "packed", "batch": "packed", "none": "none"}[attestation]
    assert str(getattr(registration.fmt, "value", registration.fmt)) == expected_fmt
    assert registration.credential_id == b64d(result["registration"]["response"]["id"])
    assert registration.user_verified is False
    if profile == "synced-passkey":
        assert registration.credential_backed_up is True
        assert registration.sign_count == 0
        assert authentication.new_sign_count == 0
    else:
        assert registration.credential_backed_up is False
        assert authentication.new_sign_count > registration.sign_count
    if attestation == "batch":
        # The AAGUID in authData matches the one in the batch certificate (py_webauthn checks
        # the extension) and is Fidelio's.
        assert registration.aaguid == "5f4d3c2b-1a09-4e8f-9d6c-0b1a2f3e4d5c"


def test_batch_attestation_is_refused_without_the_root():
    """A verifier that does not trust our CA must reject the x5c chain: proof that the
    verifier really checks it."""
    result = demo("--attestation", "batch", "--seed", "5")
    other_root = demo("--attestation", "batch", "--seed", "6")["attestation_root_pem"]
    with pytest.raises(Exception):
        verify(result, [other_root])


def test_tampered_assertion_is_rejected():
    result = demo("--seed", "9")
    signature = bytearray(b64d(result["authentication"]["response"]["response"]["signature"]))
    signature[-1] ^= 1
    result["authentication"]["response"]["response"]["signature"] = (
        base64.urlsafe_b64encode(bytes(signature)).decode().rstrip("=")
    )
    with pytest.raises(Exception):
        verify(result)


def test_attestation_init_material_is_trusted_by_the_rp():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([FIDELIO, "attestation", "init", tmp], check=True, capture_output=True)
        with open(os.path.join(tmp, "ca-cert.pem")) as f:
            root = f.read()
        result = demo("--attestation", f"batch:{tmp}", "--alg", "eddsa")
        registration, _ = verify(result, [root])
        assert str(getattr(registration.fmt, "value", registration.fmt)) == "packed"


def test_persistent_state_survives_between_runs():
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "device.redb")
        first = demo("--state", state, "--resident")
        second = demo("--state", state, "--resident", "--user", "bob@example.com")
        verify(first)
        verify(second)
        # The global counter continued across processes.
        _, auth = verify(second)
        assert auth.new_sign_count >= 4
