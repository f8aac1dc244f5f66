"""The web console at ``/console``: collections, records, backups and health in a browser.

Read-only, server-rendered (Jinja2, autoescaped; no script at all), behind the credentials the
API takes. A browser signs in once (:mod:`.session`: a sealed, short-lived cookie); every page
then reads what it shows as API requests through the whole gateway (:mod:`.api`), so the
authentication, authorization and tenant scope, limits, audit log and metrics are those of
the API, by construction.

Modules: :mod:`.app` (the route table, sign-in and out, headers), :mod:`.pages` (tenants,
collections, records, similar records), :mod:`.admin` (backups, operations, audit),
:mod:`.oidc` (the authorization-code flow with PKCE), :mod:`.switch` (the gateway step).
"""

from chromactl.gateway.console.app import Console
from chromactl.gateway.console.switch import ConsoleSwitch

__all__ = ["Console", "ConsoleSwitch"]
