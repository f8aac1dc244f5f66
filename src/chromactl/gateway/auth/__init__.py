"""Authentication: one pipeline over small authenticators (token, basic, OIDC)."""

from chromactl.gateway.auth.base import Authenticator, AuthFailure, Presented

__all__ = ["AuthFailure", "Authenticator", "Presented"]
