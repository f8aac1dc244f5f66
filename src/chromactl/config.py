"""The chromactl configuration file.

One format, one source of truth: the Helm chart renders this file into a
ConfigMap for the pod, and ``chromactl up`` writes the same file for the
local stack. Every component (gateway, backup service, restore) reads it
through :func:`load_config`.

Secrets are never values in this file: it names files (mounted Secrets) or
environment variables that hold them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chromactl.errors import ConfigError
from chromactl.secrets import TLS_DIR

Port = Annotated[int, Field(ge=1, le=65535)]

#: Environment variable naming the config file when no path is given.
CONFIG_ENV = "CHROMACTL_CONFIG"


class Section(BaseModel):
    """Base for every section: unknown keys are an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ChromaSettings(Section):
    """Where Chroma is and where its data lives."""

    #: URL of the Chroma server the gateway forwards to.
    url: str = "http://127.0.0.1:8001"
    #: Chroma's data directory (``persist_path``); read by backups and metrics.
    persist_path: Path = Path("/data")
    #: Chroma's version as deployed (the chart's ``chromadb.apiVersion``).
    version: str = "1.5.9"


class LogSettings(Section):
    """How chromactl logs."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``json`` for log collectors (the chart's default), ``console`` for people.
    format: Literal["json", "console"] = "console"


class RetentionSettings(Section):
    """Which complete snapshots ``backup prune`` keeps (restic-style windows)."""

    keep_last: int = Field(7, ge=0)
    keep_daily: int = Field(7, ge=0)
    keep_weekly: int = Field(4, ge=0)
    keep_monthly: int = Field(6, ge=0)
    #: Snapshots without a manifest younger than this may still be uploading.
    incomplete_grace_s: float = Field(6 * 3600, ge=0)


class ContinuousSettings(Section):
    """Continuous backup: the gateway's journal of acknowledged writes, shipped to the
    target beside the snapshots, for a restore to any second (``docs/backup.md``)."""

    enabled: bool = False
    #: The recovery point goal: a write is in the target at most this long after Chroma
    #: acknowledged it (a metric and an alert say when it is not).
    max_lag_s: float = Field(5.0, gt=0)
    #: How often the journal is read and shipped.
    ship_interval_s: float = Field(1.0, gt=0)
    #: Where the gateway processes keep their journal until it is shipped (default: a
    #: temporary directory of the pod's process).
    journal_dir: Path | None = None


class TargetSettings(Section):
    """Where a backup target is: its URL, and for object storage how to reach it."""

    #: Storage URL of the target: a path, ``s3://``, ``gs://``, ``az://``
    #: (:mod:`chromactl.storage.schemes`).
    target: str = ""
    #: S3-compatible endpoint (MinIO and others); empty for AWS.
    endpoint_url: str | None = None
    #: The S3 region.
    region: str | None = None
    #: Extra non-secret options of the target's storage client.
    storage_options: dict[str, str | int | float | bool] = {}
    #: Directory of a mounted Secret with this target's credentials, each file named as the
    #: client's environment variable (``AWS_ACCESS_KEY_ID``, ``AZURE_STORAGE_CONNECTION_STRING``,
    #: ...): given to this target's client only, never put into the environment.
    credentials_dir: Path | None = None


class CopySettings(TargetSettings):
    """A further target each complete snapshot (and the journal) is copied to, off-site."""

    #: Another bucket, region or provider, or a path.
    target: str
    #: What the copy keeps (default: ``backup.retention``).
    retention: RetentionSettings | None = None


class EncryptionSettings(Section):
    """Client-side encryption of the target (``docs/backup.md``): the secret that wraps the
    repository's data key, from a file (a mounted Secret) or an environment variable."""

    key_file: Path | None = None
    key_env: str | None = None


class BackupSettings(TargetSettings):
    """Where snapshots go and how they are taken (``chromactl backup``)."""

    #: The gateway whose agent API holds writes during a snapshot taken from outside the pod.
    gateway_url: str | None = None
    #: File or environment variable holding the gateway admin token.
    token_file: Path | None = None
    token_env: str = "CHROMACTL_ADMIN_TOKEN"
    #: CA bundle to verify an https gateway with (None: the system's CAs), and the
    #: client certificate and key to present when it asks for one.
    gateway_ca_file: Path | None = None
    gateway_cert_file: Path | None = None
    gateway_key_file: Path | None = None
    #: How long the gateway may hold writes before giving up.
    hold_timeout_s: float = Field(10.0, gt=0)
    #: Local scratch space for files copied during the hold.
    staging_dir: Path | None = None
    compression_level: int = Field(3, ge=1, le=22)
    #: Object storage: tries per operation (upload, download, listing), the first
    #: backoff (doubling), the time limit of one operation with its retries, and
    #: the connect/read timeout of one request.
    retry_attempts: int = Field(5, ge=1)
    retry_backoff_s: float = Field(0.5, gt=0)
    op_timeout_s: float = Field(600.0, gt=0)
    io_timeout_s: float = Field(30.0, gt=0)
    retention: RetentionSettings = RetentionSettings()
    continuous: ContinuousSettings = ContinuousSettings()
    #: Further targets every snapshot is copied to after it is taken (off-site copies).
    copies: list[CopySettings] = []
    encryption: EncryptionSettings = EncryptionSettings()


Role = Literal["admin", "writer", "reader"]

#: JWT signature algorithms the gateway accepts: asymmetric only. ``none`` and
#: the HMAC family (``HS*``) are never accepted, whatever the token says.
JwtAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]
DEFAULT_ALGORITHMS: tuple[JwtAlgorithm, ...] = ("RS256", "PS256", "ES256", "EdDSA")


class Grant(Section):
    """A role and the part of Chroma it applies to.

    Patterns are shell-style wildcards (``*``, ``?``, ``[ab]``). A database pattern
    with a slash (``team-a/*``) matches ``tenant/database``; without one it matches
    the database name in every tenant the grant covers.
    """

    #: ``reader``: read records and list; ``writer``: also create/modify/delete
    #: collections and records; ``admin``: also tenants, databases, the agent API.
    role: Role = "reader"
    #: Tenants this grant covers.
    tenants: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    #: Databases this grant covers.
    databases: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    #: ``false``: requests of a Chroma 0.x client (``gateway.legacy_clients``) are refused for
    #: it, saying to upgrade the client: apps that were moved stay moved.
    legacy_clients: bool = True


class TokenCredential(Grant):
    """One API token, read from a file (mounted Secret) or an environment variable."""

    #: Reported as ``user_id`` by ``/api/v2/auth/identity`` and in logs; never secret.
    name: str = Field(min_length=1)
    #: File holding the token (surrounding whitespace is ignored).
    token_file: Path | None = None
    #: Environment variable holding the token.
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TokenCredential:
        if (self.token_file is None) == (self.token_env is None):
            raise ValueError("set exactly one of token_file and token_env")
        return self


class BasicCredential(Grant):
    """One user name and password (HTTP basic). Only a bcrypt hash is kept in memory."""

    #: The user name, or ``username_file`` (the Secret's ``username`` key).
    username: str | None = None
    username_file: Path | None = None
    #: The password in a file or env variable; it is hashed with bcrypt at start-up.
    password_file: Path | None = None
    password_env: str | None = None
    #: Or a bcrypt hash (``$2b$...``, as from ``htpasswd -B``) in a file.
    password_hash_file: Path | None = None

    @model_validator(mode="after")
    def _sources(self) -> BasicCredential:
        if (self.username is None) == (self.username_file is None):
            raise ValueError("set exactly one of username and username_file")
        given = [self.password_file, self.password_env, self.password_hash_file]
        if sum(x is not None for x in given) != 1:
            raise ValueError("set exactly one of password_file, password_env and password_hash_file")
        return self


TokenHeader = Literal["authorization", "x-chroma-token"]
TOKEN_HEADERS: tuple[TokenHeader, ...] = ("authorization", "x-chroma-token")


class TokenAuthSettings(Section):
    """Static API tokens (``Authorization: Bearer`` or ``X-Chroma-Token``)."""

    #: Which request headers may carry a token (names are case-insensitive).
    headers: list[TokenHeader] = Field(default_factory=lambda: list(TOKEN_HEADERS), min_length=1)
    credentials: list[TokenCredential] = []


class BasicAuthSettings(Section):
    """HTTP basic authentication (``Authorization: Basic``)."""

    users: list[BasicCredential] = []
    #: bcrypt cost for passwords hashed at start-up.
    bcrypt_rounds: int = Field(12, ge=4, le=16)
    #: A verified user name/password pair is remembered (as a keyed hash) this long,
    #: so that bcrypt does not run on every request; 0 turns that off.
    verified_cache_s: float = Field(300.0, ge=0)


class ClaimRule(Grant):
    """Grant a role and scope to tokens whose claim contains a value."""

    #: Claim name; dots walk into objects (``realm_access.roles``).
    claim: str = "groups"
    #: The claim (a string or a list of strings) must equal or contain this value.
    value: str


class OIDCSettings(Section):
    """OpenID Connect / JWT bearer tokens from an identity provider."""

    #: Issuer URL; must equal the ``iss`` claim and the discovery document's ``issuer``.
    issuer: str
    #: Accepted ``aud`` values; a token must name at least one.
    audience: list[str] = Field(min_length=1)
    #: Accepted signature algorithms (asymmetric only).
    algorithms: list[JwtAlgorithm] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS), min_length=1)
    #: Discovery document; default ``{issuer}/.well-known/openid-configuration``.
    discovery_url: str | None = None
    #: JWKS URL; default from the discovery document.
    jwks_url: str | None = None
    #: CA bundle for the issuer's HTTPS (default: the system's).
    ca_file: Path | None = None
    #: How long fetched signing keys are used before they are fetched again.
    jwks_cache_s: float = Field(600.0, gt=0)
    #: A token with an unknown ``kid`` fetches the keys again, at most this often.
    jwks_min_refresh_s: float = Field(10.0, ge=0)
    #: Allowed clock difference for ``exp``, ``nbf`` and ``iat``.
    clock_skew_s: float = Field(30.0, ge=0)
    #: Claim reported as ``user_id``.
    user_claim: str = "sub"
    #: Role and scope of every valid token, before rules (``null``: none).
    default_grant: Grant | None = None
    #: Each matching rule adds its role and scope; a token with none is refused (403).
    rules: list[ClaimRule] = []


class CertificateIdentity(Grant):
    """A client certificate name with the role and scope it gets."""

    #: The certificate's subject common name, or one of its DNS, URI or e-mail subject
    #: alternative names (exact match); reported as ``user_id``.
    name: str = Field(min_length=1)


class ClientCertAuthSettings(Section):
    """Client certificates, verified by TLS against ``tls.client_ca_file``, as an identity.

    A request with a token, basic or OIDC credential is judged by that credential; one
    without is judged by its connection's certificate.
    """

    identities: list[CertificateIdentity] = Field(min_length=1)


class AuthSettings(Section):
    """Who may call the gateway. Several methods can be on at once."""

    #: Off: every request is let through as an anonymous admin (unsafe; local use).
    enabled: bool = True
    token: TokenAuthSettings | None = None
    basic: BasicAuthSettings | None = None
    oidc: OIDCSettings | None = None
    client_cert: ClientCertAuthSettings | None = None


class TLSSettings(Section):
    """HTTPS on the gateway port. Certificate files are re-read when they change."""

    enabled: bool = False
    #: PEM certificate chain and private key (e.g. a mounted ``kubernetes.io/tls`` Secret).
    cert_file: Path = TLS_DIR / "tls.crt"
    key_file: Path = TLS_DIR / "tls.key"
    #: Lowest protocol version accepted.
    min_version: Literal["1.2", "1.3"] = "1.2"
    #: Client certificates: ``none``, ``optional`` or ``required``; verified against
    #: ``client_ca_file``.
    client_auth: Literal["none", "optional", "required"] = "none"
    client_ca_file: Path | None = None
    #: How often the certificate files are checked for a change.
    reload_interval_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _client_ca(self) -> TLSSettings:
        if self.client_auth != "none" and self.client_ca_file is None:
            raise ValueError("client_auth needs client_ca_file")
        return self


class MetricsSettings(Section):
    """What the gateway's metrics read and how many series they may make."""

    #: Tenant/database pairs that get their own label values; later ones count as ``__other__``.
    database_series: int = Field(20, ge=0)
    #: Collections with their own series (the largest by records); the rest are summed.
    collection_series: int = Field(50, ge=0)
    #: Read Chroma's data directory (SQLite read-only, sizes), probe Chroma and the certificate.
    internals: bool = True
    #: Whether Chroma's data directory (``chroma.persist_path``) is here to read. ``false``
    #: in front of a Chroma elsewhere (the chart's gateway tier): only the probes run.
    data_directory: bool = True
    #: Seconds between reads of the data directory (scrapes read the cached result).
    internals_interval_s: float = Field(30.0, ge=1)
    #: Longest one SQLite read may hold the shared lock (a Chroma commit waits for it);
    #: a longer read is interrupted and the last value kept.
    internals_read_budget_s: float = Field(0.1, gt=0, le=10)


class AuditSettings(Section):
    """The audit log: one JSON line per request that reached an authorization decision."""

    #: Write the audit log. Admin operations and writes are always in it when it is on.
    enabled: bool = True
    #: Reads (queries, gets, listings) too: one line per read, which can be many.
    reads: bool = False
    #: A file to append the lines to (rotated at ``max_bytes``, ``backups`` kept); ``null``:
    #: standard output, each line a JSON object with ``"logger": "chromactl.audit"``.
    file: Path | None = None
    max_bytes: int = Field(104857600, ge=1048576)
    backups: int = Field(5, ge=0)


class LimitRule(Section):
    """Limits of one credential or tenant (``gateway.limits``); unset: no limit."""

    #: A token bucket of requests: this many per second on average, ``burst`` at once
    #: (default: the rate, rounded up).
    requests_per_second: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)
    #: Requests in flight at once.
    concurrent_requests: int | None = Field(None, ge=1)
    #: Records written (adds, updates, upserts, deletes) per minute.
    records_per_minute: int | None = Field(None, ge=1)
    #: Tenants only: collections the tenant may hold, records one of its collections may hold.
    max_collections: int | None = Field(None, ge=0)
    max_records_per_collection: int | None = Field(None, ge=0)


class LimitsSettings(Section):
    """Rate limits and quotas per credential and per tenant, for the whole pod
    (``docs/limits.md``). The rule named ``*`` applies to those without one of their own."""

    enabled: bool = False
    #: By credential name (``gateway.auth`` credentials; OIDC subjects; certificate names).
    credentials: dict[str, LimitRule] = {}
    #: By tenant.
    tenants: dict[str, LimitRule] = {}
    #: A YAML file with ``credentials:`` and ``tenants:`` that replaces the two above, read
    #: again when it changes (a mounted ConfigMap): limits change without a restart.
    file: Path | None = None
    #: Where the gateway processes of the pod share their counters (default: a temporary
    #: directory of the pod's process).
    state_dir: Path | None = None
    #: After a 429 over ``requests_per_second``, the connection it went out on is not read
    #: again until the wait it named has passed: a client that ignores ``Retry-After`` waits
    #: anyway, instead of making the gateway spend its time refusing (``docs/limits.md``).
    pause_refused_connections: bool = True

    @model_validator(mode="after")
    def _caps_are_per_tenant(self) -> LimitsSettings:
        for name, rule in self.credentials.items():
            if rule.max_collections is not None or rule.max_records_per_collection is not None:
                raise ValueError(
                    f"gateway.limits.credentials.{name}: max_collections and "
                    "max_records_per_collection are limits of a tenant: set them under tenants"
                )
        return self


class ClientLimitsSettings(Section):
    """Limits on client connections, so that slow or many clients cannot exhaust the gateway."""

    #: A request's headers must arrive within this time (from the connection or the first byte).
    header_timeout_s: float = Field(10.0, gt=0)
    #: Longest wait for the next piece of a request body before the request gets 408.
    body_timeout_s: float = Field(30.0, gt=0)
    #: A whole request body must arrive within this time.
    body_deadline_s: float = Field(300.0, gt=0)
    #: Idle keep-alive connections from clients are closed after this time.
    keep_alive_s: float = Field(75.0, gt=0)
    #: Open connections (and requests) beyond this get 503 until some close.
    max_connections: int = Field(1024, ge=1)
    #: Request line and headers together larger than this get 431.
    max_header_bytes: int = Field(65536, ge=4096)


class ConsoleOIDCSettings(Section):
    """The console's OpenID Connect sign-in: the authorization-code flow with PKCE against
    ``gateway.auth.oidc.issuer``. The provider must return to ``{console URL}/oidc/callback``."""

    #: The client the console signs in as (registered at the provider for the code flow).
    client_id: str = Field(min_length=1)
    #: Its secret, for a confidential client; ``null``: a public client (PKCE alone).
    client_secret_file: Path | None = None
    #: Scopes asked for (``openid`` is always added).
    scopes: list[str] = ["openid"]
    #: The ``resource`` (RFC 8707) the access token is asked for, when the provider issues
    #: tokens per resource (default: the first of ``gateway.auth.oidc.audience``).
    resource: str | None = None


class ConsoleSettings(Section):
    """The web console at ``/console`` (``docs/console.md``): read-only, signed in with the
    credentials the API takes."""

    enabled: bool = True
    #: A signed-in browser is signed out after this many seconds (and when its credential
    #: stops being accepted).
    session_ttl_s: float = Field(1800.0, gt=0, le=86400)
    #: A file with the key (32 bytes or more) sessions are sealed with: the same file for every
    #: pod behind one Service. ``null``: a key of this pod's own (its workers share it), so a
    #: session ends when the pod restarts.
    session_key_file: Path | None = None
    #: The console's address as browsers reach it (``https://chroma.example.com/console``):
    #: where the OIDC provider sends the browser back. ``null``: taken from the request.
    public_url: str | None = Field(None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    #: Records per page of the record browser.
    page_size: int = Field(20, ge=1, le=200)
    oidc: ConsoleOIDCSettings | None = None


class GatewaySettings(Section):
    """``chromactl gateway``: auth, TLS, metrics and write-hold in front of Chroma."""

    #: Address and port clients connect to (the chart's ``chromadb.serverHttpPort``).
    listen_address: str = "0.0.0.0"
    port: Port = 8000
    #: Serve under this path prefix too (``/chroma`` when an ingress does not strip it).
    path_prefix: str = Field("", pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    #: Prometheus metrics on their own port (not on the client Service); ``null``: off.
    metrics_port: Port | None = 9464
    metrics_address: str = "0.0.0.0"
    metrics: MetricsSettings = MetricsSettings()
    #: Request bodies over this many bytes are refused with 413.
    max_body_bytes: int = Field(41943040, ge=1024)
    #: Let an admin call ``POST /api/v2/reset`` (Chroma must allow it too).
    allow_reset: bool = False
    #: Idle keep-alive connections kept open to Chroma.
    upstream_keepalive: int = Field(64, ge=1)
    #: Time limit for Chroma to answer one request.
    upstream_timeout_s: float = Field(300.0, gt=0)
    #: Serve Chroma's routes on the fast path (:mod:`chromactl.gateway.fastpath`): the same
    #: decisions without ASGI, forwarded over raw kept-alive connections. ``false`` serves
    #: every request through the ASGI app.
    fast_path: bool = True
    #: Serve Chroma 0.4-0.6 clients too (:mod:`chromactl.gateway.legacy`): their requests
    #: translated to 1.x and the answers back. ``false``: they get what Chroma 1.x answers.
    legacy_clients: bool = True
    #: Seconds a new write waits while writes are held before it gets 503.
    write_wait_s: float = Field(30.0, gt=0)
    #: Longest hold the agent API grants (holds end by themselves after their timeout).
    max_hold_s: float = Field(300.0, gt=0)
    #: Processes serving the client port together, one event loop each; ``null``: as many as
    #: the container's CPU limit (its cgroup) or else its CPU request allows, at least 1.
    workers: int | None = Field(None, ge=1, le=64)
    #: Collection id -> tenant/database cache size and lifetime.
    collection_cache_size: int = Field(10000, ge=1)
    collection_cache_ttl_s: float = Field(300.0, gt=0)
    auth: AuthSettings = AuthSettings()
    tls: TLSSettings = TLSSettings()
    client_limits: ClientLimitsSettings = ClientLimitsSettings()
    audit: AuditSettings = AuditSettings()
    limits: LimitsSettings = LimitsSettings()
    console: ConsoleSettings = ConsoleSettings()

    @model_validator(mode="after")
    def _console_oidc_needs_oidc(self) -> GatewaySettings:
        if self.console.oidc is not None and self.auth.oidc is None:
            raise ValueError(
                "console.oidc signs in against gateway.auth.oidc: configure auth.oidc (issuer, "
                "audience) too, or remove console.oidc"
            )
        return self

    @model_validator(mode="after")
    def _client_cert_needs_tls(self) -> GatewaySettings:
        if self.auth.client_cert is not None and (not self.tls.enabled or self.tls.client_auth == "none"):
            raise ValueError(
                "auth.client_cert needs tls.enabled: true and tls.client_auth optional or required "
                "(with tls.client_ca_file): without them no client certificate is verified"
            )
        return self


class HaSettings(Section):
    """``highAvailability``: this pod is one of several, each with its own Chroma; a Lease
    names the primary, standbys follow its writes (docs/high-availability.md)."""

    enabled: bool = False
    #: The Lease (``coordination.k8s.io/v1``, in the pod's namespace) whose holder is the primary.
    lease_name: str = "chromadb-leader"
    #: This pod's name (the Lease's holder identity); ``null``: ``$POD_NAME``, else the host name.
    pod_name: str | None = None
    #: A peer's gateway by its pod name: ``{pod}`` is replaced (the chart: the headless Service).
    peer_url: str = "http://{pod}:8000"
    #: CA that signed the peers' gateway certificates (``https`` peer URLs).
    peer_ca_file: Path | None = None
    #: File holding the token a standby presents to the primary's agent API (an admin credential).
    token_file: Path | None = None
    #: Where this pod keeps its replication log and state (on its data volume, survives restarts).
    state_dir: Path | None = None
    lease_duration_s: float = Field(15.0, gt=0)
    renew_deadline_s: float = Field(10.0, gt=0)
    retry_period_s: float = Field(2.0, gt=0)
    #: A standby further behind than this many seconds leaves the read-only Service.
    max_lag_s: float = Field(10.0, gt=0)
    #: A standby takes the lease only with at most this many entries not applied (Patroni's name).
    maximum_lag_on_failover: int = Field(1000, ge=0)
    #: Answer a write only once a standby has applied it (RPO 0).
    synchronous: bool = False
    #: How long a synchronous write waits for a standby before it is answered 503.
    synchronous_timeout_s: float = Field(10.0, gt=0)
    #: Bytes of replication log the primary keeps for standbys that reconnect; one further
    #: behind is rebuilt from a base copy.
    retained_log_bytes: int = Field(256 << 20, ge=1 << 20)


class Settings(Section):
    """The whole chromactl configuration file."""

    chroma: ChromaSettings = ChromaSettings()
    log: LogSettings = LogSettings()
    gateway: GatewaySettings = GatewaySettings()
    backup: BackupSettings = BackupSettings()
    ha: HaSettings = HaSettings()


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_config(data: dict[str, Any], *, source: str = "config") -> Settings:
    """Validate a mapping as :class:`Settings`.

    Raises:
        ConfigError: naming every wrong key and what is expected there.
    """
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_location(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{source} is not a valid chromactl config:\n{problems}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the config from ``path``, ``$CHROMACTL_CONFIG``, or use defaults."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    if path is None:
        return Settings()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a mapping at the top level, not {type(data).__name__}")
    return parse_config(data, source=str(file))
