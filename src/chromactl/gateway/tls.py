"""Server TLS: TLS 1.2+ with modern ciphers, and certificates re-read when they change.

The gateway serves with one :class:`ssl.SSLContext`. Loading a new chain into that same
context affects only handshakes that start afterwards, so a rotated certificate (e.g.
cert-manager renewing the mounted Secret) is picked up without a restart and without
touching open connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

from chromactl.config import TLSSettings

log = logging.getLogger("chromactl.gateway.tls")

#: ECDHE with AEAD ciphers only (TLS 1.2); TLS 1.3 suites are OpenSSL's defaults.
CIPHERS_TLS12 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)  # follows the symlinks that Secret volumes swap
    return st.st_mtime_ns, st.st_ino, st.st_size


class ReloadingTLS:
    """An SSL context whose certificate chain follows the files it was loaded from."""

    def __init__(self, settings: TLSSettings) -> None:
        self.settings = settings
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if settings.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
        )
        ctx.set_ciphers(CIPHERS_TLS12)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.set_alpn_protocols(["http/1.1"])
        if settings.client_auth != "none":
            ctx.load_verify_locations(cafile=str(settings.client_ca_file))
            ctx.verify_mode = ssl.CERT_REQUIRED if settings.client_auth == "required" else ssl.CERT_OPTIONAL
        self.context = ctx
        self._stamps = self._current_stamps()
        ctx.load_cert_chain(str(settings.cert_file), str(settings.key_file))
        #: How many times a changed certificate was loaded.
        self.reloads = 0

    def _current_stamps(self) -> tuple[tuple[int, int, int], ...]:
        return (_stamp(self.settings.cert_file), _stamp(self.settings.key_file))

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; a broken pair keeps the old one."""
        try:
            stamps = self._current_stamps()
        except OSError as exc:
            log.warning("cannot stat the certificate files: %s", exc)
            return False
        if stamps == self._stamps:
            return False
        try:
            self.context.load_cert_chain(str(self.settings.cert_file), str(self.settings.key_file))
        except (ssl.SSLError, OSError) as exc:
            # Mid-rotation the key may not match the chain yet: try again next time.
            log.warning("new certificate not loaded (kept the old one): %s", exc)
            return False
        self._stamps = stamps
        self.reloads += 1
        log.info("loaded a changed certificate from %s", self.settings.cert_file)
        return True

    async def watch(self) -> None:
        """Check the files every ``reload_interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            self.reload_if_changed()
