"""Tell a JWT from an opaque token without parsing it."""


def looks_like_jwt(value: str) -> bool:
    """Three dot-separated parts, the first a base64url JSON object."""
    return value.startswith("eyJ") and value.count(".") == 2
