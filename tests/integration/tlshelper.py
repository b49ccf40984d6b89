"""Certificates for the TLS tests, made with python3-cryptography: a test CA, leaves it signs
(valid, expired, weak), and OCSP responses about them."""
import datetime
import ipaddress
import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.utcnow


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class CA:
    """A certificate authority of the test's own."""

    def __init__(self, cn="portgate test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW() - datetime.timedelta(days=1))
                     .not_valid_after(NOW() + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))

    def pem(self):
        return _pem(self.cert)

    def issue(self, names, key=None, not_before=None, not_after=None):
        """A leaf for names (DNS names or IP addresses): (cert, key)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        sans = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        cert = (x509.CertificateBuilder().subject_name(_name(names[0]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before or NOW() - datetime.timedelta(days=1))
                .not_valid_after(not_after or NOW() + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName(sans), False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .sign(self.key, hashes.SHA256()))
        return cert, key

    def write_leaf(self, dirpath, stem, names, chain=True, **kw):
        """Writes STEM.crt (the leaf, then the CA when chain) and STEM.key; returns their paths."""
        cert, key = self.issue(names, **kw)
        crt, keyf = dirpath / f"{stem}.crt", dirpath / f"{stem}.key"
        crt.write_bytes(_pem(cert) + (self.pem() if chain else b""))
        keyf.write_bytes(_pem_key(key))
        keyf.chmod(0o600)
        return crt, keyf, cert

    def write_client(self, dirpath, cn):
        """A client's certificate for cn (clientAuth): writes CN.crt and CN.key; returns their
        paths and the certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(cn))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(NOW() - datetime.timedelta(days=1))
                .not_valid_after(NOW() + datetime.timedelta(days=30))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
                .sign(self.key, hashes.SHA256()))
        crt, keyf = dirpath / f"{cn}.crt", dirpath / f"{cn}.key"
        crt.write_bytes(_pem(cert))
        keyf.write_bytes(_pem_key(key))
        keyf.chmod(0o600)
        return crt, keyf, cert

    def crl(self, revoked=(), next_update=None):
        """A PEM CRL signed by the CA, revoking the certificates given."""
        next_update = next_update or NOW() + datetime.timedelta(days=7)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(min(NOW(), next_update) - datetime.timedelta(hours=1))
             .next_update(next_update))
        for c in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(c.serial_number)
                .revocation_date(NOW() - datetime.timedelta(hours=1)).build())
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def ocsp_response(self, cert, status="good", this_update=None, next_update=None):
        """A DER OCSP response, signed by the CA, about cert."""
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=self.cert, algorithm=hashes.SHA1(),
            cert_status=(ocsp.OCSPCertStatus.GOOD if status == "good"
                         else ocsp.OCSPCertStatus.REVOKED),
            this_update=this_update or NOW() - datetime.timedelta(hours=1),
            next_update=next_update or NOW() + datetime.timedelta(days=1),
            revocation_time=NOW() - datetime.timedelta(days=1) if status != "good" else None,
            revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, self.cert)
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _ocsp_for(signer_key, signer_cert, cert, issuer):
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=issuer, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.GOOD,
        this_update=NOW() - datetime.timedelta(hours=1),
        next_update=NOW() + datetime.timedelta(days=1), revocation_time=None,
        revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
    return b.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


CA.ocsp_response_for = lambda self, cert, issuer: _ocsp_for(self.key, self.cert, cert, issuer)


def rsa_key(bits):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def write_key(path, key):
    path.write_bytes(_pem_key(key))


def client_context(cafile=None, maximum=None, minimum=None):
    """A TLS client context that trusts cafile (a PEM file) and checks the name."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if maximum:
        ctx.maximum_version = maximum
    if minimum:
        ctx.minimum_version = minimum
    return ctx


def tls_connect(port, ctx, server_hostname="localhost", session=None, host="127.0.0.1",
                timeout=5):
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
    except Exception:
        raw.close()
        raise


def peer_cn(s):
    """The common name of the certificate the server showed."""
    der = s.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
