"""TLS and mutual TLS credentials from configured PEM files (plaintext when none is configured)."""

from __future__ import annotations

import grpc

from modelserve_common.config import BaseServiceSettings
from modelserve_common.errors import InvalidArgument


def _read(path: object) -> bytes:
    with open(str(path), "rb") as f:
        return f.read()


def server_credentials(settings: BaseServiceSettings) -> grpc.ServerCredentials | None:
    """TLS server credentials; with ``tls_ca_file`` set, client certificates are required (mTLS)."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise InvalidArgument("tls_cert_file and tls_key_file must be set together")
    ca = _read(settings.tls_ca_file) if settings.tls_ca_file else None
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key_file), _read(settings.tls_cert_file))],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def channel_credentials(settings: BaseServiceSettings) -> grpc.ChannelCredentials | None:
    """TLS channel credentials when ``tls_ca_file`` is set (presenting our cert for mTLS if set)."""
    if settings.tls_ca_file is None:
        return None
    key = _read(settings.tls_key_file) if settings.tls_key_file else None
    cert = _read(settings.tls_cert_file) if settings.tls_cert_file else None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file), private_key=key, certificate_chain=cert
    )
