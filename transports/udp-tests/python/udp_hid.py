"""python-fido2 over the UDP lane: a `fido2.hid.base.CtapHidConnection` that moves one 64-byte
CTAPHID report per datagram (no report-ID byte) to and from `fidelio serve`.

Everything above the report level (channel allocation, framing, KEEPALIVE, CANCEL, CBOR) is
python-fido2's own `CtapHidDevice`; this module only replaces the HID device node.

    from udp_hid import open_device
    device = open_device("127.0.0.1", 8111)       # a fido2.hid.CtapHidDevice
    client = Fido2Client(device, DefaultClientDataCollector("https://example.com"))
"""

from __future__ import annotations

import socket

from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

REPORT_SIZE = 64


class UdpCtapHidConnection(CtapHidConnection):
    """Reports over a connected UDP socket. `timeout` bounds every read: the daemon sends a
    KEEPALIVE every 100 ms while it works, so silence means it is gone or broken, and the
    caller gets a TimeoutError instead of hanging."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.address = (host, port)
        self.timeout = timeout
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # connect(): only datagrams from the daemon are received, and an ICMP "port
        # unreachable" surfaces as ConnectionRefusedError instead of silence.
        self._socket.connect(self.address)
        self._socket.settimeout(timeout)

    def write_packet(self, data: bytes) -> None:
        if len(data) != REPORT_SIZE:
            raise ValueError(f"a CTAPHID report is {REPORT_SIZE} bytes, got {len(data)}")
        sent = self._socket.send(data)
        if sent != REPORT_SIZE:
            raise OSError(f"short UDP send: {sent} of {REPORT_SIZE} bytes")

    def read_packet(self) -> bytes:
        try:
            data = self._socket.recv(2048)
        except socket.timeout:
            raise TimeoutError(
                f"no CTAPHID report from udp:{self.address[0]}:{self.address[1]} "
                f"within {self.timeout} s"
            ) from None
        if len(data) != REPORT_SIZE:
            raise OSError(f"received a {len(data)}-byte datagram; a report is {REPORT_SIZE}")
        return data

    def close(self) -> None:
        self._socket.close()


def descriptor(host: str, port: int) -> HidDescriptor:
    return HidDescriptor(
        path=f"udp:{host}:{port}",
        vid=0,
        pid=0,
        report_size_in=REPORT_SIZE,
        report_size_out=REPORT_SIZE,
        product_name="Fidelio virtual authenticator (UDP)",
        serial_number=None,
    )


def open_device(host: str, port: int, timeout: float = 5.0) -> CtapHidDevice:
    """A CtapHidDevice on its own socket, hence its own CTAPHID channel (INIT is done here)."""
    connection = UdpCtapHidConnection(host, port, timeout)
    try:
        return CtapHidDevice(descriptor(host, port), connection)
    except BaseException:
        connection.close()
        raise


def ctap2(daemon) -> tuple[Ctap2, CtapHidDevice]:
    """A CTAP2 session with the daemon on a fresh device (its own channel), and the device."""
    dev = open_device(daemon.host, daemon.port)
    return Ctap2(dev), dev


def code_of(error: BaseException) -> int | None:
    """The CTAP status inside a CtapError, or a ClientError caused by one."""
    while error is not None:
        if isinstance(error, CtapError):
            return error.code
        error = error.__cause__ or error.__context__
    return None
