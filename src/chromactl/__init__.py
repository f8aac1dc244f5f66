"""chromactl: run Chroma in production.

A gateway in front of Chroma (auth, TLS, metrics, write-hold), backups and a
local stack, configured from one file that the Helm chart also renders.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
