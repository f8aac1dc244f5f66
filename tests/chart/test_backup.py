"""The backup block: the CronJob asking the gateway's agent, the config it reads, restore on start-up."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from chromactl.config import parse_config
from tests.chart.helm import Render, everything_values, names_key, render, render_error

S3 = {"enabled": True, "target": "s3://backups/chroma", "existingSecret": "s3-creds"}


def backup(**values: Any) -> dict[str, Any]:
    return {"backup": {**S3, **values}}


def config(r: Render) -> dict[str, Any]:
    return yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])


def cron_pod(r: Render) -> dict[str, Any]:
    return r.get("CronJob", "chroma-chromadb-backup")["spec"]["jobTemplate"]["spec"]["template"]


def mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def test_off_by_default_renders_nothing_of_it() -> None:
    r = render()
    assert not r.has("CronJob") and not r.has("PersistentVolumeClaim")
    assert not r.has("Secret", "chroma-chromadb-backup-agent")
    assert "restore" not in [c["name"] for c in r.pod_spec.get("initContainers", [])]
    assert "backup" not in config(r)
    assert [c["name"] for c in config(r)["gateway"]["auth"]["token"]["credentials"]] == ["admin"]
    ingress = r.get("NetworkPolicy")["spec"]["ingress"]
    # No backup agent rule: the client port only (the metrics port opens with networkPolicy.metricsFrom).
    assert [p["port"] for rule in ingress for p in rule["ports"]] == ["http"]


def test_cronjob_asks_the_agent_through_the_service_and_waits() -> None:
    r = render(backup(schedule="15 1 * * *", timeZone="Europe/Berlin"))
    cron = r.get("CronJob", "chroma-chromadb-backup")["spec"]
    assert cron["schedule"] == "15 1 * * *" and cron["timeZone"] == "Europe/Berlin"
    assert cron["concurrencyPolicy"] == "Forbid"
    assert (cron["successfulJobsHistoryLimit"], cron["failedJobsHistoryLimit"]) == (3, 3)
    assert cron["startingDeadlineSeconds"] == 600 and cron["suspend"] is False
    job = cron["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (1, 21600)
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["command"] == [
        "chromactl",
        "backup",
        "trigger",
        "--gateway=http://chroma-chromadb:8000",
        "--token-file=/etc/chromactl/backup-agent/token",
        "--wait",
        "--prune",
    ]
    assert mounts(container) == {"backup-agent": "/etc/chromactl/backup-agent"}
    assert pod["volumes"] == [
        {
            "name": "backup-agent",
            "secret": {"secretName": "chroma-chromadb-backup-agent", "defaultMode": 0o440},
        }
    ]


def test_cronjob_follows_service_port_and_values() -> None:
    r = render(
        {
            **backup(
                retention={"enabled": False},
                timeZone="",
                cronJob={
                    "concurrencyPolicy": "Replace",
                    "backoffLimit": 0,
                    "suspend": True,
                    "startingDeadlineSeconds": None,
                },
            ),
            "service": {"port": 80},
        }
    )
    cron = r.get("CronJob", "chroma-chromadb-backup")["spec"]
    assert "timeZone" not in cron and "startingDeadlineSeconds" not in cron
    assert cron["concurrencyPolicy"] == "Replace" and cron["suspend"] is True
    assert cron["jobTemplate"]["spec"]["backoffLimit"] == 0
    command = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--gateway=http://chroma-chromadb:80" in command and command[-1] == "--no-prune"


def test_job_pod_is_restricted_and_holds_no_storage_credentials() -> None:
    r = render(backup())
    template = cron_pod(r)
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = spec["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "serviceAccountName" not in spec  # the IRSA role stays with Chroma's pod
    assert "env" not in spec["containers"][0] and "envFrom" not in spec["containers"][0]
    assert all(v["name"] != "backup-credentials" for v in spec["volumes"])
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"


def test_rendered_config_is_what_the_agent_and_the_restore_read() -> None:
    r = render(
        backup(
            endpointUrl="http://minio:9000",
            region="eu-west-1",
            storageOptions={"use_ssl": False},
            holdTimeoutSeconds=25,
            compressionLevel=7,
            retention={"keepLast": 3, "keepDaily": 2, "keepWeekly": 1, "keepMonthly": 0},
        )
    )
    settings = parse_config(config(r), source="rendered chromactl.yaml")
    b = settings.backup
    assert b.target == "s3://backups/chroma"
    assert (b.endpoint_url, b.region) == ("http://minio:9000", "eu-west-1")
    assert b.storage_options == {"use_ssl": False}
    assert (b.hold_timeout_s, b.compression_level) == (25, 7)
    assert (
        b.retention.keep_last,
        b.retention.keep_daily,
        b.retention.keep_weekly,
        b.retention.keep_monthly,
    ) == (3, 2, 1, 0)
    assert str(b.staging_dir) == "/tmp" and "tmp" in mounts(r.container("gateway"))
    assert str(b.credentials_dir) == mounts(r.container("gateway"))["backup-credentials"]
    # the agent's token is an admin credential the gateway reads from the mounted Secret
    agent = next(c for c in settings.gateway.auth.token.credentials if c.name == "backup-agent")
    assert agent.role == "admin"
    assert str(agent.token_file).startswith(mounts(r.container("gateway"))["backup-agent"])
    assert str(settings.chroma.persist_path) == "/data" and settings.chroma.version == "1.5.9"


def test_credentials_come_from_the_secret_never_the_configmap() -> None:
    r = render(backup())
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["backup-credentials"]["secret"]["secretName"] == "s3-creds"
    text = r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"]
    assert "s3-creds" not in text and "AWS_" not in text
    env = r.container("gateway").get("env", [])
    assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in env), env
    assert not any(e["name"].startswith("AWS_") for e in env), env
    # workload identity: no Secret, the ServiceAccount carries the role
    r = render(
        {
            "backup": {"enabled": True, "target": "s3://b/p"},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
        }
    )
    assert "credentials_dir" not in config(r)["backup"]
    assert r.pod_spec["serviceAccountName"] == "chroma-chromadb"
    assert all(v["name"] != "backup-credentials" for v in r.pod_spec["volumes"])


def test_agent_token_is_generated_mounted_and_shared() -> None:
    r = render(backup())
    secret = r.get("Secret", "chroma-chromadb-backup-agent")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert token.startswith("ck_") and len(token) == 46
    assert (
        token
        != base64.b64decode(
            render(backup()).get("Secret", "chroma-chromadb-backup-agent")["data"]["token"]
        ).decode()
    )
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["backup-agent"]["secret"]["secretName"] == "chroma-chromadb-backup-agent"


@pytest.mark.parametrize(
    "auth", [{"type": "basic"}, {"credentials": [{"name": "dash", "role": "reader", "secretName": "dash"}]}]
)
def test_agent_token_works_beside_basic_auth_and_other_credentials(auth: dict[str, Any]) -> None:
    r = render({**backup(), "chromadb": {"auth": auth}})
    settings = parse_config(config(r))
    names = [c.name for c in settings.gateway.auth.token.credentials]
    assert "backup-agent" in names
    if auth.get("type") == "basic":
        assert settings.gateway.auth.basic is not None and names == ["backup-agent"]


def test_existing_agent_secret_is_used_as_is() -> None:
    r = render(backup(agent={"existingSecret": "my-agent"}))
    assert not r.has("Secret", "chroma-chromadb-backup-agent")
    assert {v["name"]: v for v in r.pod_spec["volumes"]}["backup-agent"]["secret"]["secretName"] == "my-agent"
    assert cron_pod(r)["spec"]["volumes"][0]["secret"]["secretName"] == "my-agent"


def test_without_gateway_auth_no_token_is_made_or_sent() -> None:
    r = render({**backup(), "chromadb": {"auth": {"enabled": False}}})
    assert not r.has("Secret")
    command = cron_pod(r)["spec"]["containers"][0]["command"]
    assert not any(a.startswith("--token-file") for a in command)
    assert "volumes" not in cron_pod(r)["spec"]


def test_local_target_on_a_backup_volume_the_chart_creates_and_keeps() -> None:
    r = render(
        {"backup": {"enabled": True, "volume": {"enabled": True, "size": "50Gi", "storageClass": "slow"}}}
    )
    assert parse_config(config(r)).backup.target == "/backups"
    pvc = r.get("PersistentVolumeClaim", "chroma-chromadb-backup")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pvc["spec"]["storageClassName"] == "slow"
    assert mounts(r.container("gateway"))["backup"] == "/backups"
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["backup"]["persistentVolumeClaim"]["claimName"] == "chroma-chromadb-backup"
    assert "backup" not in mounts(cron_pod(r)["spec"]["containers"][0])  # RWO: only Chroma's pod

    r = render(
        {
            "backup": {
                "enabled": True,
                "target": "/mnt/b/chroma",
                "volume": {"enabled": True, "existingClaim": "nfs", "mountPath": "/mnt/b"},
            }
        }
    )
    assert not r.has("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["backup"]["persistentVolumeClaim"]["claimName"] == "nfs"
    assert parse_config(config(r)).backup.target == "/mnt/b/chroma"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"backup": {"enabled": True}}, "set backup.target"),
        ({"backup": {"enabled": True, "target": "/backups"}}, "backup.volume.enabled=true"),
        (
            {"backup": {"enabled": True, "target": "/elsewhere", "volume": {"enabled": True}}},
            "not on the backup volume",
        ),
        (
            {"backup": {"enabled": True, "target": "/backupsX", "volume": {"enabled": True}}},
            "not on the backup volume",
        ),
        ({**backup(), "gateway": {"enabled": False}}, "gateway.enabled=true"),
        ({**backup(), "chromadb": {"apiVersion": "0.6.3"}}, "gateway.enabled=true"),
        ({"backup": {"restore": {"enabled": True}}}, "set backup.restore.from"),
        ({"backup": {"restore": {"enabled": True, "from": "file:///restore"}}}, "backup.volume.enabled=true"),
        ({"backup": {"continuous": {"enabled": True}}}, "set backup.enabled=true and backup.target"),
        (
            backup(restore={"enabled": True, "toTime": "latest", "snapshot": "20260315T120000Z-3fa9c1"}),
            "set one (snapshot: latest with toTime)",
        ),
    ],
)
def test_wrong_combinations_say_which_value_to_change(values: dict[str, Any], expected: str) -> None:
    assert expected in render_error(values)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"backup": {"schedule": "daily"}}, "backup.schedule"),
        ({"backup": {"cronJob": {"concurrencyPolicy": "Allow"}}}, "backup.cronJob.concurrencyPolicy"),
        ({"backup": {"restore": {"snapshot": "yesterday"}}}, "backup.restore.snapshot"),
        ({"backup": {"compressionLevel": 30}}, "backup.compressionLevel"),
        ({"backup": {"retention": {"keepLast": -1}}}, "backup.retention.keepLast"),
        ({"backup": {"targets": "s3://typo"}}, "backup"),
        ({"backup": {"restore": {"toTime": "yesterday noon"}}}, "backup.restore.toTime"),
        ({"backup": {"restore": {"toTime": "2026-03-15T12:00:05"}}}, "backup.restore.toTime"),
        ({"backup": {"continuous": {"maxLagSeconds": 0}}}, "backup.continuous.maxLagSeconds"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], key: str) -> None:
    assert names_key(render_error(values), key)


def test_restore_runs_first_idempotently_from_the_target() -> None:
    r = render(backup(restore={"enabled": True}))
    init = next(c for c in r.pod_spec["initContainers"] if c["name"] == "restore")
    assert init["name"] == "restore" and init["image"] == r.container("gateway")["image"]
    assert init["command"] == [
        "chromactl",
        "restore",
        "--config=/etc/chromactl/config/chromactl.yaml",
        "--repo=s3://backups/chroma",
        "--snapshot=latest",
        "--data-dir=/data",
        "--if-not-restored",
        "--quiet",
    ]
    assert mounts(init) == {
        "chromactl-config": "/etc/chromactl/config",
        "data": "/data",
        "tmp": "/tmp",
        "backup-credentials": "/etc/chromactl/backup-credentials",
    }
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["resources"]["limits"]["memory"] == "1Gi"


def test_continuous_backup_is_configured_for_the_gateway_and_restores_reach_a_time() -> None:
    r = render(
        backup(
            continuous={"enabled": True, "maxLagSeconds": 10, "shipIntervalSeconds": 2},
            restore={"enabled": True, "toTime": "2026-03-15T12:00:05.250Z"},
        )
    )
    settings = parse_config(config(r))
    assert settings.backup.continuous.enabled and settings.backup.target == "s3://backups/chroma"
    assert (settings.backup.continuous.max_lag_s, settings.backup.continuous.ship_interval_s) == (10, 2)
    init = next(c for c in r.pod_spec["initContainers"] if c["name"] == "restore")
    assert "--to-time=2026-03-15T12:00:05.250Z" in init["command"]
    assert not any(a.startswith("--snapshot") for a in init["command"])
    assert "continuous" not in config(render(backup()))["backup"]


def test_restore_alone_reads_its_source_and_never_backs_up_into_it() -> None:
    r = render(
        {
            "backup": {
                "existingSecret": "old-creds",
                "endpointUrl": "http://minio:9000",
                "restore": {
                    "enabled": True,
                    "from": "s3://old/chroma",
                    "snapshot": "20260315T120000Z-3fa9c1",
                },
            },
            "chromadb": {"persistDirectory": "/var/lib/chroma"},
        }
    )
    init = next(c for c in r.pod_spec["initContainers"] if c["name"] == "restore")
    assert "--repo=s3://old/chroma" in init["command"]
    assert "--snapshot=20260315T120000Z-3fa9c1" in init["command"]
    assert "--data-dir=/var/lib/chroma" in init["command"]
    settings = parse_config(config(r))
    assert settings.backup.target == ""  # the agent takes no backups into the restore source
    assert settings.backup.endpoint_url == "http://minio:9000"
    assert not r.has("CronJob") and not r.has("Secret", "chroma-chromadb-backup-agent")


def test_restore_can_start_empty_when_the_source_has_no_snapshot_yet() -> None:
    r = render(backup(restore={"enabled": True, "requireSnapshot": False}))
    init = next(c for c in r.pod_spec["initContainers"] if c["name"] == "restore")
    assert "--skip-if-no-snapshot" in init["command"]


def test_restore_from_the_backup_volume() -> None:
    r = render({"backup": {"volume": {"enabled": True}, "restore": {"enabled": True}}})
    init = next(c for c in r.pod_spec["initContainers"] if c["name"] == "restore")
    assert "--repo=/backups" in init["command"] and mounts(init)["backup"] == "/backups"


def test_networkpolicy_lets_the_backup_job_reach_the_gateway() -> None:
    r = render(
        {
            **backup(),
            "networkPolicy": {
                "ingressFrom": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}
                ]
            },
        }
    )
    rules = r.get("NetworkPolicy")["spec"]["ingress"]
    job_labels = cron_pod(r)["metadata"]["labels"]
    allowed = [
        rule
        for rule in rules
        if any(
            "podSelector" in peer
            and set(peer["podSelector"]["matchLabels"].items()) <= set(job_labels.items())
            for peer in rule.get("from", [])
        )
    ]
    assert len(allowed) == 1 and allowed[0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    server_port = {p["name"]: p for p in r.container("gateway")["ports"]}
    assert "http" in server_port
    # the rule selects backup pods only, not every pod of the release
    assert allowed[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "backup"


def test_everything_values_turn_backups_on() -> None:
    r = render(everything_values())
    assert r.has("CronJob", "chroma-chromadb-backup") and r.has("PersistentVolumeClaim")
    assert [c["name"] for c in r.pod_spec["initContainers"]] == ["restore", "migrate"]
    assert cron_pod(r)["spec"]["imagePullSecrets"] == r.pod_spec["imagePullSecrets"]
    assert "--gateway=https://chroma-chromadb:80" in cron_pod(r)["spec"]["containers"][0]["command"]


def test_over_tls_the_job_verifies_the_gateway_and_can_present_a_client_certificate() -> None:
    tls = {"enabled": True, "clientAuth": "required", "clientCA": {"secretName": "client-ca"}}
    assert "backup.agent.clientCertSecret" in render_error({**backup(), "chromadb": {"tls": tls}})
    r = render({**backup(agent={"clientCertSecret": "backup-client"}), "chromadb": {"tls": tls}})
    spec = cron_pod(r)["spec"]
    (container,) = spec["containers"]
    assert "--gateway=https://chroma-chromadb:8000" in container["command"]
    assert "--client-cert=/etc/chromactl/backup-client/tls.crt" in container["command"]
    assert "--client-key=/etc/chromactl/backup-client/tls.key" in container["command"]
    assert {e["name"]: e["value"] for e in container["env"]}["CHROMA_CA_FILE"].startswith(
        mounts(container)["tls-ca"]
    )
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["backup-client-cert"]["secret"]["secretName"] == "backup-client"
    assert volumes["tls-ca"]["secret"]["secretName"] == "chroma-chromadb-tls"
    # without client certificates the job only needs the CA
    r = render(
        {**backup(agent={"clientCertSecret": "backup-client"}), "chromadb": {"tls": {"enabled": True}}}
    )
    (container,) = cron_pod(r)["spec"]["containers"]
    assert "--client-cert=/etc/chromactl/backup-client/tls.crt" not in container["command"]


def test_agent_token_is_kept_on_upgrade() -> None:
    from tests.chart.fake_kube import FakeCluster, helm_config
    from tests.chart.helm import NAMESPACE, RELEASE, chart

    before = render(backup())
    cluster = FakeCluster()
    for obj in before.objects:
        obj["metadata"].setdefault("annotations", {})["meta.helm.sh/release-name"] = RELEASE
        cluster.add(obj, NAMESPACE)
    with helm_config(cluster, NAMESPACE) as helm:
        after = Render(
            helm.render(chart(), backup(), name=RELEASE, namespace=NAMESPACE, is_upgrade=True, revision=2)
        )
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/chroma-chromadb-backup-agent" in [
        r.split("?")[0] for r in cluster.requests
    ]
    name = "chroma-chromadb-backup-agent"
    assert after.get("Secret", name)["data"] == before.get("Secret", name)["data"]


def test_notes_say_where_backups_go_and_how_to_take_one_now() -> None:
    assert "Backups:" not in render().notes and "Restore:" not in render().notes
    notes = render(backup(restore={"enabled": True})).notes
    assert "s3://backups/chroma" in notes
    assert "kubectl -n vectors create job --from=cronjob/chroma-chromadb-backup" in notes
    assert "kubectl -n vectors logs chroma-chromadb-0 -c restore" in notes


def test_copies_reach_the_config_with_their_own_keys_mounted() -> None:
    r = render(
        backup(
            copies=[
                {
                    "target": "s3://dr/chroma",
                    "region": "us-west-2",
                    "existingSecret": "dr-keys",
                    "retention": {"keepLast": 3, "keepDaily": 30},
                },
                {"target": "gs://other/chroma"},
            ]
        )
    )
    copies = parse_config(config(r)).backup.copies
    assert [c.target for c in copies] == ["s3://dr/chroma", "gs://other/chroma"]
    assert (
        str(copies[0].credentials_dir) == "/etc/chromactl/backup-copies/0"
        and copies[1].credentials_dir is None
    )
    assert copies[0].retention is not None and (
        copies[0].retention.keep_last,
        copies[0].retention.keep_daily,
    ) == (3, 30)
    assert copies[1].retention is None  # backup.retention
    assert mounts(r.container("gateway"))["backup-copy-0"] == "/etc/chromactl/backup-copies/0"
    volume = next(v for v in r.pod_spec["volumes"] if v["name"] == "backup-copy-0")
    assert volume["secret"]["secretName"] == "dr-keys"
    assert "set backup.enabled=true" in render_error({"backup": {"copies": [{"target": "s3://x/y"}]}})
    assert names_key(render_error(backup(copies=[{"region": "eu"}])), "backup.copies")


def test_drill_cronjob_restores_into_its_own_scratch_and_reports_to_the_gateway() -> None:
    r = render(backup(drill={"enabled": True, "schedule": "0 6 * * 1", "sample": 9, "scratchSize": "20Gi"}))
    cron = r.get("CronJob", "chroma-chromadb-drill")
    assert cron["spec"]["schedule"] == "0 6 * * 1" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    drill, chroma = pod["containers"]
    assert drill["command"][:3] == ["chromactl", "backup", "drill"]
    assert "--sample=9" in drill["command"] and "--report-to=http://chroma-chromadb:8000" in drill["command"]
    assert chroma["image"] == r.container("chroma")["image"] and chroma["command"][0] == "sh"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["drill"]["emptyDir"] == {"sizeLimit": "20Gi"}
    assert "data" not in volumes  # never the live data volume
    assert mounts(drill)["backup-credentials"] == "/etc/chromactl/backup-credentials"
    for container in (drill, chroma):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["runAsNonRoot"] is True
    assert not render(backup()).has("CronJob", "chroma-chromadb-drill")
    assert "set backup.enabled=true" in render_error({"backup": {"drill": {"enabled": True}}})


def test_encryption_key_is_mounted_wherever_the_target_is_read_or_written() -> None:
    r = render(
        backup(
            encryption={"existingSecret": "backup-key", "key": "secret"},
            restore={"enabled": True},
            drill={"enabled": True},
        )
    )
    key = "/etc/chromactl/backup-encryption/secret"
    assert str(parse_config(config(r)).backup.encryption.key_file) == key
    restore_init = next(c for c in r.pod_spec["initContainers"] if c["name"] == "restore")
    drill_pod = r.get("CronJob", "chroma-chromadb-drill")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for container in (r.container("gateway"), restore_init, drill_pod["containers"][0]):
        assert mounts(container)["backup-encryption"] == "/etc/chromactl/backup-encryption"
    volume = next(v for v in r.pod_spec["volumes"] if v["name"] == "backup-encryption")
    assert volume["secret"]["secretName"] == "backup-key"
    # The backup job only asks the gateway: no key in its pod.
    assert "backup-encryption" not in str(cron_pod(r))
    assert "encryption" not in config(render(backup()))["backup"]
