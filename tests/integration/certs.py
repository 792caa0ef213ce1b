"""Throwaway TLS material for the integration tests, made with the openssl
command: a CA, a server certificate for 127.0.0.1/localhost signed by it, EC
P-256 keys (an APNs .p8 provider key), and ES256 JWTs signed with such a key
the way an APNs provider signs its token."""

import base64
import json
import subprocess
from pathlib import Path


def _openssl(*args, data=None):
    proc = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def make_ca(directory, name="crier test CA"):
    """Makes ca.key and ca.pem in directory; returns (cert, key) paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key, cert = d / "ca.key", d / "ca.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_server_cert(directory, ca_cert, ca_key, name="server",
                     san="IP:127.0.0.1,DNS:localhost"):
    """Makes NAME.key and NAME.pem (CN 127.0.0.1, subjectAltName san, signed
    by the CA) in directory; returns (cert, key) paths."""
    d = Path(directory)
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    ext = d / f"{name}.ext"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext.write_text(f"subjectAltName={san}\n"
                   "basicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key


def make_ec_key(path):
    """Makes an EC P-256 private key in PKCS#8 PEM (what Apple's .p8 holds)."""
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path))
    return Path(path)


def public_key(private_path, public_path):
    """Writes the PEM public half of a private key."""
    _openssl("pkey", "-in", str(private_path), "-pubout", "-out", str(public_path))
    return Path(public_path)


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _der_to_raw(der):
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> r||s, 32 bytes each."""
    def read_len(buf, i):
        n = buf[i]
        if n < 0x80:
            return n, i + 1
        k = n & 0x7F
        return int.from_bytes(buf[i + 1:i + 1 + k], "big"), i + 1 + k

    assert der[0] == 0x30
    _, i = read_len(der, 1)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n, i = read_len(der, i + 1)
        out += int.from_bytes(der[i:i + n], "big").to_bytes(32, "big")
        i += n
    return out


def es256_jwt(key_path, kid, iss, iat, alg="ES256"):
    """An APNs provider token: header {alg, kid}, claims {iss, iat}, signed
    with the EC key (raw r||s signature, base64url)."""
    head = _b64url(json.dumps({"alg": alg, "kid": kid}, separators=(",", ":")).encode())
    claims = _b64url(json.dumps({"iss": iss, "iat": iat}, separators=(",", ":")).encode())
    signing_input = f"{head}.{claims}".encode()
    der = _openssl("dgst", "-sha256", "-sign", str(key_path), data=signing_input)
    return f"{head}.{claims}.{_b64url(_der_to_raw(der))}"


def jwt_claims(token):
    """The decoded claims of a JWT (no verification)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
