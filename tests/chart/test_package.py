"""`make package`: the chart archive and repository index, installable from a repository and OCI."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import helm_python
import yaml
from scripts import package_chart

from tests.chart.helm import CHART_DIR, ROOT
from tests.chart.readme import section
from tests.chart.servers import chart_repository, oci_registry

FIXTURE_ARCHIVE = ROOT / "tests" / "fixtures" / "charts" / "chromadb-0.1.0.tgz"
METADATA = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
VERSION = METADATA["version"]
CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}


def index_of(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_package_writes_the_archive_and_an_index_that_installs(tmp_path: Path) -> None:
    with chart_repository(tmp_path) as url:
        assert package_chart.main(["--destination", str(tmp_path), "--url", url]) == 0
        archive = tmp_path / f"chromadb-{VERSION}.tgz"
        assert archive.is_file()
        (entry,) = index_of(tmp_path / "index.yaml")["entries"]["chromadb"]
        assert entry["version"] == VERSION and entry["appVersion"] == METADATA["appVersion"]
        assert entry["digest"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        assert entry["urls"] == [f"{url}/chromadb-{VERSION}.tgz"]
        # what `helm repo add` + `helm install` do: read the index, download, render
        assert helm_python.repo_index(url)["entries"]["chromadb"][0]["version"] == VERSION
        download = tmp_path / "download"
        download.mkdir()
        helm_python.pull("chromadb", repo_url=url, version=VERSION, destination=download)
        with helm_python.Chart.load(download / archive.name) as pulled:
            rendered = pulled.render({}, name="chroma", namespace="vectors")
    assert any(path.endswith("statefulset.yaml") for path in rendered)


def test_merge_keeps_the_versions_already_published(tmp_path: Path) -> None:
    published = tmp_path / "published"
    published.mkdir()
    shutil.copy(FIXTURE_ARCHIVE, published)
    helm_python.repo_index_generate(published, base_url="https://charts.example.com")
    out = tmp_path / "out"
    assert (
        package_chart.main(
            [
                "--destination",
                str(out),
                "--url",
                "https://charts.example.com",
                "--merge",
                str(published / "index.yaml"),
            ]
        )
        == 0
    )
    entries = index_of(out / "index.yaml")["entries"]["chromadb"]
    assert sorted(e["version"] for e in entries) == sorted(["0.1.0", VERSION])
    old = next(e for e in entries if e["version"] == "0.1.0")
    assert old["urls"] == ["https://charts.example.com/chromadb-0.1.0.tgz"]


def test_a_missing_merge_index_is_an_error(tmp_path: Path, capsys) -> None:
    assert package_chart.main(["--destination", str(tmp_path), "--merge", str(tmp_path / "nope.yaml")]) == 1
    assert "--merge" in capsys.readouterr().err


def copy_chart(tmp_path: Path) -> Path:
    chart = tmp_path / "chromadb"
    shutil.copytree(CHART_DIR, chart)
    return chart


def test_stale_generated_docs_are_refused(tmp_path: Path, capsys) -> None:
    chart = copy_chart(tmp_path)
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("# -- Number of Chroma pods.", "# -- How many pods.", 1))
    assert package_chart.main([str(chart), "--destination", str(tmp_path / "dist")]) == 1
    assert "make docs" in capsys.readouterr().err
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").glob("*.tgz"))


def test_a_chart_helm_lint_faults_is_refused(tmp_path: Path, capsys) -> None:
    chart = copy_chart(tmp_path)
    (chart / "templates" / "broken.yaml").write_text("{{ .Values.nope.deeper }}\n")
    assert package_chart.main([str(chart), "--destination", str(tmp_path / "dist")]) == 1
    assert "helm lint" in capsys.readouterr().err


def test_make_package_runs_the_script() -> None:
    out = subprocess.run(["make", "-n", "package"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "scripts/package_chart.py charts/chromadb --destination dist" in out.stdout


def test_oci_push_and_pull_round_trip(tmp_path: Path) -> None:
    """What the README's `helm push` / `helm install oci://` commands do, against a local registry."""
    archive = Path(helm_python.package(CHART_DIR, destination=tmp_path))
    with oci_registry() as (host, registry):
        helm_python.push(archive, f"oci://{host}/charts", plain_http=True)
        assert ("charts/chromadb", VERSION) in registry.manifests
        pulled = tmp_path / "pulled"
        pulled.mkdir()
        reference = f"oci://{host}/charts/chromadb"
        helm_python.pull(reference, version=VERSION, destination=pulled, plain_http=True)
    assert helm_python.digest(pulled / archive.name) == helm_python.digest(archive)


# ------------------------------------------------------------------------------------ Chart.yaml


def annotation(key: str):
    return yaml.safe_load(METADATA["annotations"][f"artifacthub.io/{key}"])


def test_artifacthub_annotations() -> None:
    assert annotation("license") == "Apache-2.0"
    assert annotation("prerelease") in (True, False)
    assert annotation("containsSecurityUpdates") in (True, False)
    images = annotation("images")
    assert {i["name"] for i in images} == {"chroma", "chromactl"}
    links = annotation("links")
    assert links and all(link["url"].startswith("https://") and link["name"] for link in links)
    changes = annotation("changes")
    assert changes, "every release lists what changed"
    for change in changes:
        assert change["kind"] in CHANGE_KINDS and change["description"], change


def test_metadata_a_repository_needs() -> None:
    for key in ("kubeVersion", "home", "icon", "sources", "maintainers", "description", "appVersion"):
        assert METADATA.get(key), key
    assert all(source.startswith("https://") for source in METADATA["sources"])


def test_kube_version_is_the_oldest_one_tested_and_linted() -> None:
    """kubeVersion, the lint target of `make package` and the oldest schema checked agree."""
    from tests.chart import test_kubernetes_validate

    oldest = package_chart.LINT_KUBE_VERSION.lstrip("v")
    assert METADATA["kubeVersion"] == f">={oldest}-0"
    source = Path(test_kubernetes_validate.__file__).read_text()
    assert oldest.rsplit(".", 1)[0] in source


def test_the_chart_version_is_newer_than_the_last_release() -> None:
    with helm_python.Chart.load(FIXTURE_ARCHIVE) as previous:
        old = tuple(int(p) for p in previous.version.split("."))
    assert tuple(int(p) for p in VERSION.split(".")) > old


# ------------------------------------------------------------------- what the README tells users


def test_readme_install_commands_match_what_is_published() -> None:
    install = section("Install")
    assert f"helm repo add chromadb {package_chart.DEFAULT_URL}" in install
    assert f"oci://ghcr.io/chromadb-chart/charts/chromadb --version {VERSION}" in install
    publish = section("Publish (maintainers)")
    assert f"helm push dist/chromadb-{VERSION}.tgz oci://ghcr.io/chromadb-chart/charts" in publish
    assert "make package" in publish and "MERGE=" in publish


def test_readme_image_example_is_what_renders() -> None:
    from tests.chart.helm import render, set_values

    text = section("Install")
    r = render(
        set_values("global.imageRegistry=registry.corp.example", "global.imagePullSecrets[0]=corp-pull")
    )
    for _, spec in r.pod_specs():
        assert spec["imagePullSecrets"] == [{"name": "corp-pull"}]
        for container in spec["containers"]:
            assert container["image"] in text, container["image"]


def test_readme_uninstall_table_names_what_is_kept() -> None:
    from tests.chart.helm import render

    text = section("Uninstall, and what happens to the data")
    r = render({"backup": {"enabled": True, "volume": {"enabled": True}}})
    claim = r.statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    data_pvc = f"{claim}-{r.statefulset['metadata']['name']}-0"
    assert f"`{data_pvc}`" in text
    assert r.statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    for kind in ("Secret", "PersistentVolumeClaim"):
        for obj in (o for o in r.objects if o["kind"] == kind):
            if obj["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep":
                assert f"`{obj['metadata']['name']}`" in text, obj["metadata"]["name"]
