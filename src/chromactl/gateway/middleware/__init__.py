"""The gateway's steps, one ASGI middleware per module, outermost first.

:func:`chromactl.gateway.app.build_gateway` composes them in this order, each step
wrapping the ones after it, around the reverse proxy (:mod:`chromactl.gateway.proxy`)::

    errors -> classify -> audit -> metrics -> body_timeout -> body_limit
      -> authentication -> identity -> authorization -> [limits]
      -> agent_switch (agent API) | write_hold -> [journal] -> reverse proxy

The domain objects the steps use (the hold gate, the audit log, the request metrics, the
limits table, rules and quotas, the journal writer, the collection cache) live beside this
package in :mod:`chromactl.gateway`.
"""
