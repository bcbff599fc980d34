"""python-fido2 2.2.1 (an independent CTAP client) against a real `fidelio serve` over UDP.

Every ceremony goes through python-fido2's own CTAPHID stack and `Fido2Client`, and every
result is verified twice, by two relying-party libraries we did not write:
`fido2.server.Fido2Server` and py_webauthn (PyPI `webauthn`, fed the JSON form of the
responses).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fido2 import cbor
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client
from fido2.cose import ES256, CoseKey, EdDSA
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CtapHidDevice
from fido2.server import Fido2Server
from fido2.webauthn import (
    Aaguid,
    AttestedCredentialData,
    AuthenticationResponse,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers.structs import AttestationFormat

from udp_hid import open_device

ORIGIN = "https://example.com"
RP_ID = "example.com"
AAGUID = "5f4d3c2b-1a09-4e8f-9d6c-0b1a2f3e4d5c"
DISCOURAGED = UserVerificationRequirement.DISCOURAGED


# ------------------------------------------------------------------------------------ helpers
def device(daemon) -> CtapHidDevice:
    return open_device(daemon.host, daemon.port)


def client_for(dev: CtapHidDevice) -> Fido2Client:
    return Fido2Client(dev, DefaultClientDataCollector(ORIGIN))


def as_json(response: RegistrationResponse | AuthenticationResponse) -> str:
    """The WebAuthn JSON serialization (RegistrationResponseJSON / AuthenticationResponseJSON)."""
    return json.dumps(dict(response))


def params(*algs: int) -> list[PublicKeyCredentialParameters]:
    return [
        PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg)
        for alg in algs
    ]


@dataclass
class Credential:
    """What a relying party keeps after a verified registration."""

    data: AttestedCredentialData
    cose_public_key: bytes  # as py_webauthn returned it
    sign_count: int
    user_id: bytes
    resident: bool

    @property
    def id(self) -> bytes:
        return self.data.credential_id

    @property
    def alg(self) -> int:
        return self.data.public_key[3]


@dataclass
class RelyingParty:
    """example.com, verifying with Fido2Server and py_webauthn side by side."""

    server: Fido2Server = field(
        default_factory=lambda: Fido2Server(PublicKeyCredentialRpEntity(name="Example", id=RP_ID))
    )
    credentials: list[Credential] = field(default_factory=list)

    def register(
        self,
        client: Fido2Client,
        user_name: str,
        *,
        resident: bool = False,
        algs: tuple[int, ...] = (ES256.ALGORITHM, EdDSA.ALGORITHM),
        exclude: list[Credential] | None = None,
    ) -> Credential:
        user = PublicKeyCredentialUserEntity(
            id=os.urandom(16), name=user_name, display_name=user_name.title()
        )
        options, state = self.server.register_begin(
            user,
            credentials=[c.data for c in exclude] if exclude else None,
            resident_key_requirement=(
                ResidentKeyRequirement.REQUIRED if resident else ResidentKeyRequirement.DISCOURAGED
            ),
            user_verification=DISCOURAGED,
        )
        public_key = dataclasses.replace(options.public_key, pub_key_cred_params=params(*algs))
        response = client.make_credential(public_key)

        # Verifier 1: python-fido2's server.
        auth_data = self.server.register_complete(state, response)
        assert auth_data.credential_data is not None
        assert auth_data.is_user_present()
        assert not auth_data.is_user_verified()
        assert auth_data.credential_data.aaguid == Aaguid.parse(AAGUID)

        # Verifier 2: py_webauthn, from the JSON form, checking the packed attestation too.
        verified = verify_registration_response(
            credential=as_json(response),
            expected_challenge=public_key.challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )
        assert verified.credential_id == auth_data.credential_data.credential_id
        assert verified.aaguid == AAGUID
        assert verified.fmt == AttestationFormat.PACKED
        assert verified.user_verified is False
        assert (
            CoseKey.parse(cbor.decode(verified.credential_public_key))
            == auth_data.credential_data.public_key
        )

        credential = Credential(
            data=auth_data.credential_data,
            cose_public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            user_id=user.id,
            resident=resident,
        )
        self.credentials.append(credential)
        return credential

    def authenticate(
        self, client: Fido2Client, allow: list[Credential] | None
    ) -> list[tuple[Credential, AuthenticationResponse]]:
        """One authentication ceremony; every assertion returned (several for a discoverable
        request with several matching credentials) is verified. Returns them in order."""
        request, state = self.server.authenticate_begin(
            credentials=[c.data for c in allow] if allow else None,
            user_verification=DISCOURAGED,
        )
        public_key = request.public_key
        selection = client.get_assertion(public_key)
        count = len(selection.get_assertions())
        results = []
        for index in range(count):
            response = selection.get_response(index)
            # Verifier 1.
            matched = self.server.authenticate_complete(
                state, [c.data for c in self.credentials], response
            )
            credential = next(c for c in self.credentials if c.id == matched.credential_id)
            # Verifier 2.
            verified = verify_authentication_response(
                credential=as_json(response),
                expected_challenge=public_key.challenge,
                expected_rp_id=RP_ID,
                expected_origin=ORIGIN,
                credential_public_key=credential.cose_public_key,
                credential_current_sign_count=credential.sign_count,
            )
            assert verified.credential_id == credential.id
            assert verified.user_verified is False
            # Security-key profile: one global counter, strictly increasing.
            assert verified.new_sign_count > credential.sign_count
            credential.sign_count = verified.new_sign_count
            if allow is None:
                assert response.response.user_handle == credential.user_id
            results.append((credential, response))
        return results


def ctap_code(error: ClientError) -> int | None:
    cause = error.cause
    return cause.code if isinstance(cause, CtapError) else None


# -------------------------------------------------------------------------------------- tests
def test_get_info(fidelio_daemon):
    dev = device(fidelio_daemon())
    assert dev.version == 2  # CTAPHID protocol version
    assert dev.capabilities & CAPABILITY.CBOR
    assert not dev.capabilities & CAPABILITY.NMSG, "CTAP1/U2F: CTAPHID_MSG is offered"

    info = Ctap2(dev).get_info()
    assert "FIDO_2_0" in info.versions
    assert "U2F_V2" in info.versions
    assert info.aaguid == Aaguid.parse(AAGUID)
    assert str(info.aaguid).replace("-", "") == "5f4d3c2b1a094e8f9d6c0b1a2f3e4d5c"
    assert info.options.get("rk") is True
    assert info.options.get("up") is True
    algs = {p["alg"] for p in info.algorithms}
    assert {ES256.ALGORITHM, EdDSA.ALGORITHM} <= algs
    assert info.max_msg_size >= 1024

    # The Fido2Client sees the same device.
    assert client_for(dev).info.aaguid == info.aaguid
    dev.close()


@pytest.mark.parametrize("length", [0, 57, 58, 1000, 7609])
def test_ping_multi_packet(fidelio_daemon, length):
    """57 bytes fill the initialization packet, 58 needs one continuation, 7609 is the largest
    CTAPHID message (57 + 128 × 59)."""
    dev = device(fidelio_daemon())
    payload = os.urandom(length)
    assert dev.ping(payload) == payload
    # The channel still works afterwards.
    assert dev.ping(b"after") == b"after"
    dev.close()


def test_register_and_authenticate_non_discoverable(fidelio_daemon):
    dev = device(fidelio_daemon())
    client = client_for(dev)
    rp = RelyingParty()
    alice = rp.register(client, "alice@example.com")
    assert alice.alg == ES256.ALGORITHM
    for _ in range(2):
        [(credential, response)] = rp.authenticate(client, allow=[alice])
        assert credential is alice
    dev.close()


def test_register_and_authenticate_discoverable(fidelio_daemon):
    dev = device(fidelio_daemon())
    client = client_for(dev)
    rp = RelyingParty()
    alice = rp.register(client, "alice@example.com", resident=True)
    bob = rp.register(client, "bob@example.com", resident=True)
    rp.register(client, "carol@example.com", resident=False)  # must not be discovered

    # No allowCredentials: the authenticator finds both discoverable credentials; the second
    # one comes through authenticatorGetNextAssertion.
    results = rp.authenticate(client, allow=None)
    assert sorted(c.id for c, _ in results) == sorted([alice.id, bob.id])
    # Newest first: CTAP 2.0 authenticatorGetAssertion orders discovered credentials by
    # creation time, most recent first.
    assert [c.id for c, _ in results] == [bob.id, alice.id]

    # A discoverable credential also works with an allow list.
    [(credential, _)] = rp.authenticate(client, allow=[alice])
    assert credential is alice
    dev.close()


@pytest.mark.parametrize("resident", [False, True], ids=["non-discoverable", "discoverable"])
@pytest.mark.parametrize(
    "algs,expected",
    [
        ((EdDSA.ALGORITHM, ES256.ALGORITHM), EdDSA.ALGORITHM),
        ((ES256.ALGORITHM, EdDSA.ALGORITHM), ES256.ALGORITHM),
        ((EdDSA.ALGORITHM,), EdDSA.ALGORITHM),
    ],
    ids=["eddsa-first", "es256-first", "eddsa-only"],
)
def test_algorithm_follows_pub_key_cred_params_order(fidelio_daemon, resident, algs, expected):
    dev = device(fidelio_daemon())
    client = client_for(dev)
    rp = RelyingParty()
    credential = rp.register(client, "dave@example.com", resident=resident, algs=algs)
    assert credential.alg == expected
    assert isinstance(credential.data.public_key, EdDSA if expected == EdDSA.ALGORITHM else ES256)
    rp.authenticate(client, allow=None if resident else [credential])
    dev.close()


def test_unsupported_algorithm_only_is_refused(fidelio_daemon):
    dev = device(fidelio_daemon())
    client = client_for(dev)
    with pytest.raises(ClientError) as error:
        RelyingParty().register(client, "erin@example.com", algs=(-257,))  # RS256 only
    assert ctap_code(error.value) == CtapError.ERR.UNSUPPORTED_ALGORITHM
    assert error.value.code == ClientError.ERR.CONFIGURATION_UNSUPPORTED
    dev.close()


def test_exclude_credentials(fidelio_daemon):
    dev = device(fidelio_daemon())
    client = client_for(dev)
    rp = RelyingParty()
    alice = rp.register(client, "alice@example.com")

    # Through the client: WebAuthn's InvalidStateError equivalent.
    with pytest.raises(ClientError) as error:
        rp.register(client, "alice@example.com", exclude=[alice])
    assert error.value.code == ClientError.ERR.DEVICE_INELIGIBLE
    assert ctap_code(error.value) == CtapError.ERR.CREDENTIAL_EXCLUDED

    # Raw authenticatorMakeCredential with the excluded credential: CTAP2_ERR_CREDENTIAL_EXCLUDED.
    ctap2 = Ctap2(dev)
    with pytest.raises(CtapError) as raw:
        ctap2.make_credential(
            os.urandom(32),
            {"id": RP_ID, "name": "Example"},
            {"id": b"alice-again", "name": "alice@example.com"},
            [{"type": "public-key", "alg": ES256.ALGORITHM}],
            exclude_list=[{"type": "public-key", "id": alice.id}],
        )
    assert raw.value.code == CtapError.ERR.CREDENTIAL_EXCLUDED

    # A credential this authenticator does not know, in the exclude list, does not block.
    unrelated = Credential(
        data=AttestedCredentialData.create(
            b"\0" * 16, os.urandom(64), alice.data.public_key
        ),
        cose_public_key=b"",
        sign_count=0,
        user_id=b"x",
        resident=False,
    )
    second = rp.register(client, "alice@example.com", exclude=[unrelated])
    assert second.id != alice.id
    dev.close()


def test_presence_denied(fidelio_daemon, tmp_path: Path):
    """--presence deny: the user refuses. The authenticator answers
    CTAP2_ERR_OPERATION_DENIED (the NotAllowedError of WebAuthn); python-fido2 reports it as a
    ClientError (it maps OPERATION_DENIED to BAD_REQUEST) carrying that CTAP code."""
    state = tmp_path / "device.redb"
    # A credential first, with a cooperative user, in a state file...
    daemon = fidelio_daemon("--state", state, ephemeral=False)
    dev = device(daemon)
    rp = RelyingParty()
    alice = rp.register(client_for(dev), "alice@example.com", resident=True)
    dev.close()
    assert daemon.stop() == 0

    # ...then the same state behind a user who always refuses.
    daemon = fidelio_daemon("--state", state, "--presence", "deny", ephemeral=False)
    dev = device(daemon)
    client = client_for(dev)
    with pytest.raises(ClientError) as registration:
        rp.register(client, "bob@example.com")
    assert ctap_code(registration.value) == CtapError.ERR.OPERATION_DENIED
    with pytest.raises(ClientError) as with_allow_list:
        rp.authenticate(client, allow=[alice])
    assert ctap_code(with_allow_list.value) == CtapError.ERR.OPERATION_DENIED
    with pytest.raises(ClientError) as discoverable:
        rp.authenticate(client, allow=None)
    assert ctap_code(discoverable.value) == CtapError.ERR.OPERATION_DENIED
    dev.close()
    assert daemon.stop() == 0

    # Nothing was lost or added: with presence back, alice still signs in, alone.
    daemon = fidelio_daemon("--state", state, ephemeral=False)
    dev = device(daemon)
    [(credential, _)] = rp.authenticate(client_for(dev), allow=None)
    assert credential is alice
    dev.close()


def test_two_concurrent_clients_on_their_own_channels(fidelio_daemon):
    daemon = fidelio_daemon()
    rounds = 4
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    channels: dict[str, int] = {}
    done: dict[str, int] = {}

    def run(name: str):
        try:
            dev = device(daemon)
            channels[name] = dev._channel_id
            client = client_for(dev)
            rp = RelyingParty()
            start.wait(timeout=10)
            for i in range(rounds):
                resident = i % 2 == 1
                credential = rp.register(client, f"{name}{i}@example.com", resident=resident)
                rp.authenticate(client, allow=[credential])
                assert dev.ping(name.encode() * 100) == name.encode() * 100
                done[name] = i + 1
            dev.close()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            start.abort()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a client thread hung"
    if errors:
        raise errors[0]
    assert done == {"first": rounds, "second": rounds}
    assert channels["first"] != channels["second"]


def test_reset_deletes_every_credential(fidelio_daemon):
    dev = device(fidelio_daemon("--reset-anytime"))
    client = client_for(dev)
    rp = RelyingParty()
    alice = rp.register(client, "alice@example.com")
    bob = rp.register(client, "bob@example.com", resident=True)
    rp.authenticate(client, allow=[alice])
    rp.authenticate(client, allow=None)
    before = Ctap2(dev).get_info().remaining_disc_creds

    Ctap2(dev).reset()

    for allow in ([alice], [bob], None):
        with pytest.raises(ClientError) as error:
            rp.authenticate(client, allow=allow)
        assert error.value.code == ClientError.ERR.DEVICE_INELIGIBLE
        assert ctap_code(error.value) == CtapError.ERR.NO_CREDENTIALS
    if before is not None:
        assert Ctap2(dev).get_info().remaining_disc_creds == before + 1

    # The device is usable again, and a fresh credential does not resurrect the old ones.
    fresh = RelyingParty()
    carol = fresh.register(client, "carol@example.com", resident=True)
    [(credential, _)] = fresh.authenticate(client, allow=None)
    assert credential is carol
    dev.close()


def test_power_cycle_keeps_credentials(fidelio_daemon):
    daemon = fidelio_daemon()
    old = device(daemon)
    client = client_for(old)
    rp = RelyingParty()
    alice = rp.register(client, "alice@example.com")
    bob = rp.register(client, "bob@example.com", resident=True)
    rp.authenticate(client, allow=[alice])

    assert "power-cycled" in daemon.power_cycle()

    # The old channel is gone with the power: the device no longer knows it.
    with pytest.raises(CtapError) as gone:
        old.ping(b"still there?")
    assert gone.value.code == CtapError.ERR.INVALID_CHANNEL
    old.close()

    # A fresh device (new INIT, new channel) works, and the credentials survived.
    new = device(daemon)
    client = client_for(new)
    [(credential, _)] = rp.authenticate(client, allow=[alice])
    assert credential is alice
    [(credential, _)] = rp.authenticate(client, allow=None)
    assert credential is bob
    rp.register(client, "carol@example.com")
    new.close()


def test_verifiers_reject_a_tampered_assertion(fidelio_daemon):
    """Negative control: both verifiers really check the signature."""
    dev = device(fidelio_daemon())
    client = client_for(dev)
    rp = RelyingParty()
    alice = rp.register(client, "alice@example.com")
    request, state = rp.server.authenticate_begin(
        credentials=[alice.data], user_verification=DISCOURAGED
    )
    response = client.get_assertion(request.public_key).get_response(0)
    signature = bytearray(response.response.signature)
    signature[-1] ^= 0x01
    tampered = dataclasses.replace(
        response,
        response=dataclasses.replace(response.response, signature=bytes(signature)),
    )
    with pytest.raises(ValueError, match="signature"):
        rp.server.authenticate_complete(state, [alice.data], tampered)
    with pytest.raises(Exception, match="(?i)signature"):
        verify_authentication_response(
            credential=as_json(tampered),
            expected_challenge=request.public_key.challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=alice.cose_public_key,
            credential_current_sign_count=alice.sign_count,
        )
    # The untampered response verifies.
    rp.server.authenticate_complete(state, [alice.data], response)
    dev.close()
