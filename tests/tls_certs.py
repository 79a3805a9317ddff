"""A throwaway certificate authority for TLS tests (the ``cryptography`` package; nothing from outside).

``make_pki(directory)`` writes ``ca.crt``, ``server.crt``/``server.key`` (for ``localhost`` and
``127.0.0.1``), ``client.crt``/``client.key`` (signed by the CA) and ``other-ca.crt`` (a CA nobody
signed anything with, to test a wrong trust anchor), and returns their paths.
"""

from __future__ import annotations

import datetime
import ipaddress
import os


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: str, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _ca(cn: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, cn: str, server: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def make_pki(directory: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    os.makedirs(directory, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key, ca_cert = _ca("flowcept-test-ca")
    _other_key, other_cert = _ca("some-other-ca")
    s_key, s_cert = _leaf(ca_key, ca_cert, "localhost", server=True)
    c_key, c_cert = _leaf(ca_key, ca_cert, "flowcept-client", server=False)
    j = lambda name: os.path.join(directory, name)  # noqa: E731
    return {
        "ca": _write(j("ca.crt"), ca_cert.public_bytes(pem)),
        "other_ca": _write(j("other-ca.crt"), other_cert.public_bytes(pem)),
        "server_cert": _write(j("server.crt"), s_cert.public_bytes(pem)),
        "server_key": _write(j("server.key"), _pem_key(s_key)),
        "client_cert": _write(j("client.crt"), c_cert.public_bytes(pem)),
        "client_key": _write(j("client.key"), _pem_key(c_key)),
    }
