"""Client-side encryption of a backup repository (``backup.encryption``).

Everything chromactl writes to an encrypted target leaves the pod encrypted with AES-256-GCM
(``cryptography``): snapshot objects, manifests, journal segments and heads, drill reports.
File names inside a snapshot become opaque (an HMAC of the name); what stays readable is the
layout (snapshot and epoch ids, which are times) and the leases of running backups.

Keys. The repository's data key (random, 256 bits) is stored only wrapped:
``keys/<key id>.json`` holds it encrypted under a key-encryption key derived from the secret
the pod is given (a file of a Kubernetes Secret, or an environment variable); the key id is a
fingerprint of that secret. Rotation wraps the same data key under a new secret
(:func:`add_key`), so nothing already uploaded is encrypted again; the old ``keys/`` file is
then deleted. A wrong or missing secret is refused with a clear error before anything is read.

Object format: ``CHXE1`` + a 7-byte random nonce prefix, then records of at most 1 MiB, each
``length (4 bytes) + ciphertext with its tag``; the nonce of record *i* is the prefix, *i*
(4 bytes) and a byte that is 1 on the last record only, and the object's name is the
associated data: a record reordered, dropped, cut short or moved to another object fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chromactl.errors import ChromactlError

MAGIC = b"CHXE1"
RECORD = 1 << 20
KEYS_DIR = "keys"
_LEN = struct.Struct(">I")


class EncryptionError(ChromactlError):
    """The repository cannot be opened with the key given, or an object fails its check."""


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"chromactl key id\0" + secret).hexdigest()[:16]


def _kek(secret: bytes) -> AESGCM:
    return AESGCM(hashlib.sha256(b"chromactl key-encryption key\0" + secret).digest())


def wrap(secret: bytes, data_key: bytes) -> bytes:
    nonce = os.urandom(12)
    sealed = _kek(secret).encrypt(nonce, data_key, b"chromactl data key")
    return json.dumps(
        {
            "key_id": key_id(secret),
            "nonce": base64.b64encode(nonce).decode(),
            "wrapped": base64.b64encode(sealed).decode(),
        }
    ).encode()


def unwrap(secret: bytes, data: bytes) -> bytes:
    try:
        doc = json.loads(data)
        return _kek(secret).decrypt(
            base64.b64decode(doc["nonce"]), base64.b64decode(doc["wrapped"]), b"chromactl data key"
        )
    except (InvalidTag, ValueError, KeyError) as exc:
        raise EncryptionError(
            f"the backup encryption key does not open this repository's data key: {exc}"
        ) from None


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


@dataclass(frozen=True)
class Keyring:
    """The data key of one repository."""

    data_key: bytes
    key_id: str

    @property
    def _aead(self) -> AESGCM:
        return AESGCM(self.data_key)

    def stored_name(self, name: str) -> str:
        """An object name the bucket may see: its directory, then an HMAC of the rest."""
        head, _, _ = name.partition("/")
        digest = hmac.new(self.data_key, b"name\0" + name.encode(), hashlib.sha256).hexdigest()[:40]
        return f"{head}/{digest}" if "/" in name else digest

    def writer(self, raw: IO[bytes], aad: str) -> EncryptingWriter:
        return EncryptingWriter(raw, self._aead, aad.encode())

    def reader(self, raw: IO[bytes], aad: str) -> DecryptingReader:
        return DecryptingReader(raw, self._aead, aad.encode(), aad)

    def seal(self, data: bytes, aad: str) -> bytes:
        prefix = os.urandom(7)
        out = [MAGIC, prefix]
        records = [data[i : i + RECORD] for i in range(0, len(data), RECORD)] or [b""]
        for i, record in enumerate(records):
            sealed = self._aead.encrypt(_nonce(prefix, i, i == len(records) - 1), record, aad.encode())
            out += [_LEN.pack(len(sealed)), sealed]
        return b"".join(out)

    def open(self, data: bytes, aad: str) -> bytes:
        import io

        return DecryptingReader(io.BytesIO(data), self._aead, aad.encode(), aad).read()


class EncryptingWriter:
    """A writable object: plaintext in, records out (the last one on :meth:`close`)."""

    def __init__(self, raw: IO[bytes], aead: AESGCM, aad: bytes) -> None:
        self._raw = raw
        self._aead = aead
        self._aad = aad
        self._prefix = os.urandom(7)
        self._buf = bytearray()
        self._counter = 0
        raw.write(MAGIC + self._prefix)

    def _emit(self, record: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), record, self._aad)
        self._raw.write(_LEN.pack(len(sealed)) + sealed)
        self._counter += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        while len(self._buf) > RECORD:
            self._emit(bytes(self._buf[:RECORD]), last=False)
            del self._buf[:RECORD]
        return len(data)

    def close(self) -> None:
        self._emit(bytes(self._buf), last=True)
        self._buf.clear()
        self._raw.close()

    def __enter__(self) -> EncryptingWriter:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._raw.close()


class DecryptingReader:
    """A readable object: records in, checked plaintext out."""

    def __init__(self, raw: IO[bytes], aead: AESGCM, aad: bytes, name: str) -> None:
        self._raw = raw
        self._aead = aead
        self._aad = aad
        self._name = name
        self._buf = bytearray()
        self._counter = 0
        self._ended = False
        head = self._exact(len(MAGIC) + 7)
        if head[: len(MAGIC)] != MAGIC:
            raise EncryptionError(f"{name} is not an encrypted object (is the repository encrypted?)")
        self._prefix = head[len(MAGIC) :]

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = self._raw.read(n - len(data))
            if not more:
                break
            data += more
        return data

    def _next(self) -> bool:
        if self._ended:
            if self._raw.read(1):
                raise EncryptionError(f"{self._name} has data after its last record: it is damaged")
            return False
        head = self._exact(_LEN.size)
        if len(head) < _LEN.size:
            raise EncryptionError(f"{self._name} is cut short: its last record is missing")
        sealed = self._exact(_LEN.unpack(head)[0])
        for last in (False, True):
            try:
                self._buf += self._aead.decrypt(_nonce(self._prefix, self._counter, last), sealed, self._aad)
            except InvalidTag:
                continue
            self._counter += 1
            self._ended = last
            return True
        raise EncryptionError(
            f"{self._name} does not decrypt with this repository's key: it is damaged or was moved"
        )

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and self._next():
            pass
        if n < 0:
            out, self._buf = bytes(self._buf), bytearray()
        else:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        return out

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> DecryptingReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
