"""``chromactl ha``: the cluster at a glance, a switchover, and the init step of each pod.

``status`` and ``switchover`` run in a pod of the release (``kubectl exec``), where the config
names the peers and the replication credential, or anywhere with ``--url`` (a pod's gateway,
e.g. through ``kubectl port-forward``) and an admin ``--token-file``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from chromactl import chromadata
from chromactl.config import HaSettings, Settings, load_config
from chromactl.errors import ChromactlError
from chromactl.logging import configure_logging
from chromactl.secrets import read_secret
from chromactl.tables import Col, print_table

from . import base, contract
from .kubeapi import KubeApi, KubeApiError
from .node import pod_name, state_dir
from .replication_log import Record, ReplicationLog
from .state import NodeState, StateFile

log = logging.getLogger("chromactl.ha")
ha_app = typer.Typer(
    help="High availability: status, switchover, and each pod's init step.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Config file (default: $CHROMACTL_CONFIG).")
]
UrlOption = Annotated[
    str | None, typer.Option("--url", help="A pod's gateway (default: this pod's, from the config).")
]
TokenOption = Annotated[
    Path | None, typer.Option("--token-file", help="An admin token (default: the config's ha.token_file).")
]


class _Peers:
    """The release's gateways, as this pod's config (or ``--url``) reaches them."""

    def __init__(self, ha: HaSettings, url: str | None, token_file: Path | None) -> None:
        self.ha, self.url = ha, url
        token_path = token_file or ha.token_file
        headers = (
            {"Authorization": f"Bearer {read_secret(token_path, what='--token-file')}"} if token_path else {}
        )
        verify: str | bool = str(ha.peer_ca_file) if ha.peer_ca_file else True
        self.client = httpx.Client(headers=headers, verify=verify, timeout=30.0)

    def of(self, pod: str | None) -> str:
        if pod is None:
            if self.url:
                return self.url.rstrip("/")
            pod = pod_name(self.ha)
        return self.ha.peer_url.replace("{pod}", pod).rstrip("/")

    def get(self, pod: str | None, path: str) -> dict[str, Any]:
        return self._answer(self.client.get(self.of(pod) + path))

    def post(self, pod: str | None, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer(self.client.post(self.of(pod) + path, json=body, timeout=60.0))

    @staticmethod
    def _answer(answer: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = answer.json()
        except ValueError:
            body = {"message": answer.text[:300]}
        if answer.status_code >= 400:
            raise ChromactlError(
                f"{answer.request.url.path}: {body.get('error', answer.status_code)}: {body.get('message')}"
            )
        return body


def _settings(config: Path | None) -> Settings:
    settings = load_config(config)
    configure_logging(settings.log)
    return settings


@ha_app.command("status")
def status_cmd(
    config: ConfigOption = None,
    url: UrlOption = None,
    token_file: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the primary's status as JSON.")] = False,
) -> None:
    """Which pod is the primary, and how far behind each standby is."""
    settings = _settings(config)
    peers = _Peers(settings.ha, url, token_file)
    mine = peers.get(None, contract.STATUS)
    primary = mine if mine["role"] == "primary" else mine.get("primary")
    if as_json:
        print(json.dumps({"asked": mine, "primary": primary}))
        return
    rows = []
    if primary is not None:
        rows.append([primary["pod"], "primary", str(primary["last_index"]), "0", "0.0", "yes"])
        for s in primary["standbys"]:
            rows.append(
                [
                    s["pod"],
                    "standby",
                    str(s["applied"]),
                    str(s["lag_entries"]),
                    f"{s['lag_s']:.1f}",
                    "yes" if s["in_sync"] else "no",
                ]
            )
    if mine["role"] != "primary" and not any(r[0] == mine["pod"] for r in rows):
        rows.append(
            [
                mine["pod"],
                mine["role"],
                str(mine["applied"]),
                str(mine["lag_entries"]),
                f"{mine['lag_s']:.1f}",
                "?",
            ]
        )
    print_table(
        [
            Col("pod", key=True),
            Col("role"),
            Col("applied", justify="right"),
            Col("lag entries", justify="right"),
            Col("lag s", justify="right"),
            Col("in sync"),
        ],
        rows,
    )
    if primary is None:
        print(f"no primary reachable (lease holder: {mine.get('holder') or 'none'})")
    else:
        mode = "synchronous" if primary["synchronous"] else "asynchronous"
        print(
            f"primary {primary['pod']}, term {primary['term']}, {mode}, "
            f"failovers seen by it: {primary['failovers']}"
        )


@ha_app.command("switchover")
def switchover_cmd(
    to: Annotated[
        str | None, typer.Option("--to", help="The standby to promote (default: the one furthest ahead).")
    ] = None,
    if_primary: Annotated[
        bool,
        typer.Option(
            "--if-primary",
            help="Only when the pod asked is the primary and has a standby in sync, else do nothing "
            "(the chart's preStop hook: a primary that is stopped hands over first).",
        ),
    ] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
    token_file: TokenOption = None,
) -> None:
    """Move the primary to a standby on purpose: writes are held until it has every one."""
    settings = _settings(config)
    peers = _Peers(settings.ha, url, token_file)
    mine = peers.get(None, contract.STATUS)
    if if_primary and mine["role"] != "primary":
        print(f"{mine['pod']} is not the primary: nothing to hand over")
        return
    if if_primary and not any(s["in_sync"] for s in mine["standbys"]):
        print(f"{mine['pod']} has no standby in sync: the lease is released when it stops")
        return
    primary = mine["pod"] if mine["role"] == "primary" else mine.get("holder")
    if not primary:
        raise ChromactlError("no pod is the primary now: nothing to switch over")
    done = peers.post(None if mine["role"] == "primary" else primary, contract.SWITCHOVER, {"to": to})
    print(
        f"{done['primary']} is the primary (was {done['previous']}); writes were held {done['held_s']:.3f} s"
    )


@ha_app.command("init")
def init_cmd(
    config: ConfigOption = None,
    wait_s: Annotated[float, typer.Option("--wait", help="Seconds to wait for the primary.")] = 600.0,
) -> None:
    """The init container's step: rebuild this pod's data from the primary when it cannot follow."""
    settings = _settings(config)
    prepare(settings, KubeApi.in_cluster(), wait_s=wait_s)


def prepare(settings: Settings, api: KubeApi, *, wait_s: float = 600.0) -> bool:
    """Before Chroma starts: keep this pod's data if it can follow the primary, else replace it
    with a base copy from the primary. True when it was rebuilt.

    With no live primary (no holder, this pod, or a holder that has not renewed the lease for
    its duration: the whole release was down) the pod starts with its own data, so that a
    StatefulSet starting its pods in order is never stuck on a pod waiting for a later one; a
    pod that must be rebuilt does not lead before it is (``Node.eligible``).
    """
    ha = settings.ha
    pod = pod_name(ha)
    files = StateFile(state_dir(settings))
    state = files.load()
    replog = ReplicationLog(files.path.parent / "log", base=state.base, retained_bytes=ha.retained_log_bytes)
    peers = _Peers(ha, None, None)
    deadline = time.monotonic() + wait_s
    seen: tuple[str | None, float] = (None, time.monotonic())
    try:
        while True:
            lease = _lease(api, ha.lease_name)
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity") or None
            version = ((lease or {}).get("metadata") or {}).get("resourceVersion")
            if version != seen[0]:
                seen = (version, time.monotonic())
            lapsed = time.monotonic() - seen[1] > ha.lease_duration_s
            if holder in (None, pod) or lapsed:
                who = (
                    f"the primary {holder} has not renewed the lease"
                    if lapsed
                    else "no other pod is the primary"
                )
                if state.rebuild:
                    log.warning(
                        "%s: %s starts with its own data, to be rebuilt once a primary leads", who, pod
                    )
                else:
                    log.info("%s: %s starts with its own data", who, pod)
                return False
            try:
                if not _must_rebuild(settings, state, replog, peers, holder):
                    log.info("%s can follow %s from index %d", pod, holder, replog.last_index)
                    return False
                _rebuild(settings, state, files, replog, peers, holder)
                return True
            except (httpx.HTTPError, ChromactlError) as exc:
                log.warning("cannot reach the primary %s yet: %s", holder, exc)
            if time.monotonic() > deadline:
                raise ChromactlError(
                    f"{pod} must be rebuilt from the primary {holder}, "
                    f"which did not answer within {wait_s:g}s",
                    exit_code=1,
                )
            time.sleep(2.0)
    finally:
        replog.close()


def _lease(api: KubeApi, name: str) -> dict[str, Any] | None:
    try:
        return api.get_lease(name)
    except KubeApiError as exc:
        log.warning("cannot read the lease %s: %s", name, exc)
        return None


def _chroma_empty(settings: Settings) -> bool:
    db = settings.chroma.persist_path / chromadata.SQLITE_NAME
    return not db.exists() or not chromadata.collection_rows(db)


def _must_rebuild(
    settings: Settings, state: NodeState, replog: ReplicationLog, peers: _Peers, holder: str
) -> bool:
    if state.rebuild:
        return True
    if state.role == "primary" and not state.clean and state.history:
        log.warning("this pod led and stopped without handing over: it is rebuilt from %s", holder)
        return True
    if replog.last_index == 0 and not _chroma_empty(settings):
        log.warning("this pod holds data from before high availability: it is rebuilt from %s", holder)
        return True
    params = {"after": str(replog.last_index), "term": state.term_at(replog.last_index), "pod": "init"}
    with peers.client.stream(
        "GET", peers.of(holder) + contract.STREAM, params=params, timeout=10.0
    ) as answer:
        if answer.status_code == 409:
            body = json.loads(answer.read())
            log.warning("the primary %s refuses to stream to this pod: %s", holder, body.get("message"))
            return True
        if answer.status_code != 200:
            raise ChromactlError(f"the primary answered HTTP {answer.status_code}")
    return False


def _rebuild(
    settings: Settings, state: NodeState, files: StateFile, replog: ReplicationLog, peers: _Peers, holder: str
) -> None:
    work = files.path.parent
    tar = work / "base.tar"
    started = time.monotonic()
    with peers.client.stream(
        "GET", peers.of(holder) + contract.BASE, params={"pod": pod_name(settings.ha)}, timeout=600.0
    ) as answer:
        if answer.status_code != 200:
            raise ChromactlError(
                f"the primary refused a base copy: HTTP {answer.status_code}: {answer.read()[:200]!r}"
            )
        index = int(answer.headers[contract.INDEX_HEADER])
        history = [(str(t), int(f)) for t, f in json.loads(answer.headers[contract.HISTORY_HEADER])]
        origin = answer.headers.get(contract.ORIGIN_HEADER, "data")
        with open(tar, "wb") as fh:
            for chunk in answer.iter_bytes(1 << 20):
                fh.write(chunk)
    remote = NodeState(history=history)
    diverged = [
        r for r in replog.read(replog.first_index - 1) if r.index > index or remote.term_at(r.index) != r.term
    ]
    kept = base.keep_diverged(diverged, work)
    if kept is not None:
        log.error(
            "%d write(s) this pod holds are not on the primary %s and are replaced: %s (kept in %s)",
            len(diverged),
            holder,
            _describe(diverged),
            kept,
        )
    base.install(settings.chroma.persist_path, tar, work)
    replog.reset(index)
    new = NodeState(
        history=history, applied=index, base=index, origin="empty" if origin == "empty" else "data"
    )
    files.save(new)
    state.__dict__.update(new.__dict__)
    log.warning("rebuilt from %s at index %d in %.1f s", holder, index, time.monotonic() - started)


def _describe(records: list[Record]) -> str:
    parts = []
    for r in records[:20]:
        e = r.entry
        if e.kind == "records":
            ids = e.ids if e.ids is not None else e.json_body().get("ids")
            parts.append(f"#{r.index} {e.op} {e.collection} ids={ids}")
        else:
            parts.append(f"#{r.index} {e.kind} {e.op or e.reason}")
    more = f" and {len(records) - 20} more" if len(records) > 20 else ""
    return "; ".join(parts) + more


def register(app: typer.Typer) -> None:
    """Add ``chromactl ha`` to the ``chromactl`` app."""
    app.add_typer(ha_app, name="ha")
