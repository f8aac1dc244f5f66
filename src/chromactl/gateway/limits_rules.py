"""The limits' rules: ``gateway.limits``, or the rules file that replaces them.

A rule named ``*`` applies to every credential or tenant without one of its own. The rules
are re-read when ``gateway.limits.file`` changes (a mounted ConfigMap), without a restart.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import yaml

from chromactl.config import LimitRule, LimitsSettings

log = logging.getLogger("chromactl.gateway.limits")


@dataclass(frozen=True)
class Rules:
    credentials: dict[str, LimitRule]
    tenants: dict[str, LimitRule]

    @classmethod
    def of(cls, settings: LimitsSettings) -> Rules:
        return cls(dict(settings.credentials), dict(settings.tenants))

    def credential(self, name: str) -> LimitRule | None:
        return self.credentials.get(name) or self.credentials.get("*")

    def tenant(self, name: str) -> LimitRule | None:
        return self.tenants.get(name) or self.tenants.get("*")


class RulesFile:
    """``gateway.limits.file``: rules that replace the configured ones, re-read when the file
    changes. A file that cannot be read keeps the rules in force (and says why)."""

    def __init__(self, settings: LimitsSettings, check_every_s: float = 2.0) -> None:
        self.settings = settings
        self.rules = Rules.of(settings)
        self.check_every_s = check_every_s
        self._seen: tuple[float, int] | None = None
        self._checked = time.monotonic()
        self.reload()

    def current(self) -> Rules:
        """The rules in force; the file is looked at again every ``check_every_s``."""
        now = time.monotonic()
        if self.settings.file is not None and now - self._checked >= self.check_every_s:
            self._checked = now
            self.reload()
        return self.rules

    def reload(self) -> bool:
        path = self.settings.file
        if path is None:
            return False
        try:
            st = path.stat()
            seen = (st.st_mtime, st.st_size)
            if seen == self._seen:
                return False
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            merged = self.settings.model_validate({**self.settings.model_dump(), **data, "file": path})
        except Exception as exc:
            log.error("limits file %s not applied (the rules in force stay): %s", path, exc)
            return False
        self._seen = seen
        self.rules = Rules.of(merged)
        log.info("limits from %s applied", path)
        return True
