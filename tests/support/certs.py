"""A throw-away certificate authority and a server certificate for 127.0.0.1, made with the openssl CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from support.procs import run


@dataclass(frozen=True)
class TestCertificates:
    ca_cert: Path
    """The CA certificate (PEM) that signed server_cert."""
    cert_dir: Path
    """A directory holding only ca.crt: what skopeo/buildah --cert-dir and --src/--dest-cert-dir expect."""
    server_cert: Path
    server_key: Path
    ca_key: Path
    """The CA's private key (EC P-256): signs more certificates, or JWTs for a token-auth registry."""


def make_certificates(directory: Path, names: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> TestCertificates:
    """Make a CA and a server certificate valid for names (IP addresses or DNS names) under directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    # EC keys: generated in milliseconds where RSA takes noticeably longer.
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", "7",
         "-subj", "/CN=kiln test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    )  # fmt: skip
    run(["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}"])
    sans = ",".join(
        (f"IP:{n}" if n.replace(".", "").isdigit() or ":" in n else f"DNS:{n}") for n in names
    )
    ext = directory / "server.ext"
    ext.write_text(
        f"subjectAltName={sans}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run(
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "7", "-extfile", ext]
    )  # fmt: skip
    cert_dir = directory / "trust"
    cert_dir.mkdir(exist_ok=True)
    (cert_dir / "ca.crt").write_bytes(ca_cert.read_bytes())
    return TestCertificates(ca_cert=ca_cert, cert_dir=cert_dir, server_cert=cert, server_key=key, ca_key=ca_key)
