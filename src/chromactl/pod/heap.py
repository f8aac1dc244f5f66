"""The garbage collector of a gateway process, set for serving.

Each request allocates a few hundred short-lived objects; with CPython's defaults (a young
collection every 700 net allocations) the collector runs every few requests and walks the
young objects each time. A serving process first moves what it has built (modules, config,
the app) out of the collector's sight (:func:`gc.freeze`), then collects the young generation
less often: the cycles a request leaves behind are still freed, a few hundred requests later.
"""

from __future__ import annotations

import gc

#: Net allocations between young collections (CPython's default: 700).
YOUNG_THRESHOLD = 20_000


def settle_for_serving() -> None:
    """Called once, after start-up and before the first request."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
