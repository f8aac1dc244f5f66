"""The chromactl gateway: auth, authorization, write hold, metrics and TLS in front of Chroma.

Each step of a request is one ASGI middleware in :mod:`chromactl.gateway.middleware`, and
:func:`chromactl.gateway.app.build_gateway` composes them; the objects the steps use (the hold
gate, the audit log, the request metrics, the limits' table, rules and quotas, the journal
writer, the collection cache) are modules of this package, named for what they are.
:class:`chromactl.gateway.hold_gate.WriteGate` is usable in-process (backups).
"""

from chromactl.gateway.hold_gate import Hold, WriteGate, WritesHeld

__all__ = ["Hold", "WriteGate", "WritesHeld"]
