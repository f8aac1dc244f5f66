"""The agent API: the admin-only HTTP API the gateway serves in Chroma's pod.

:mod:`.contract` has its paths and payloads, :mod:`.client` the one client for it.
"""

from .client import AgentClient, AgentError, AgentUnreachable, ClientTLS

__all__ = ["AgentClient", "AgentError", "AgentUnreachable", "ClientTLS"]
