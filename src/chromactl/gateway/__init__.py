"""The chromactl gateway: auth, authorization, write-hold, metrics and TLS in front of Chroma.

Each concern is one ASGI middleware in its own module; :func:`chromactl.gateway.app.build_gateway`
composes them. :class:`chromactl.gateway.hold_gate.WriteGate` is usable in-process (backups).
"""

from chromactl.gateway.hold_gate import Hold, WriteGate, WritesHeld

__all__ = ["Hold", "WriteGate", "WritesHeld"]
