"""Object storage: where backups, copies, exports and the journal are kept.

One interface (:class:`ObjectStore`: save, load, list, stat and remove objects by key), one
implementation over fsspec (:class:`FsspecStore`), a wrapper that retries and bounds each
operation (:class:`RetryingStore`), and one module per URL scheme under :mod:`.schemes`,
registered by scheme with its own options, credentials and URL redaction. Nothing outside this
package touches fsspec; :func:`open_store` is the one way to get a store.
"""

from __future__ import annotations

from .errors import ObjectMissing, StoreError
from .opening import open_store, scheme_of
from .registry import Location, Scheme, redact_url, register, registered
from .retrying import RetryingStore, RetryPolicy, is_transient, without_retries
from .store import ObjectStore

__all__ = [
    "Location",
    "ObjectMissing",
    "ObjectStore",
    "RetryPolicy",
    "RetryingStore",
    "Scheme",
    "StoreError",
    "is_transient",
    "open_store",
    "redact_url",
    "register",
    "registered",
    "scheme_of",
    "without_retries",
]
