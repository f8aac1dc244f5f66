"""Authentication: one pipeline over small authenticators (token, basic, OIDC, client certificates)."""

from chromactl.gateway.auth.base import Authenticator, AuthFailure, Presented

__all__ = ["AuthFailure", "Authenticator", "Presented"]
