"""The chart as a dependency of another chart (`file://` here; a repository or OCI for users).

A parent chart is built in a temporary directory, its dependency resolved with Helm's own
`dependency update`/`dependency build` and rendered. Pod specs are found generically (any
object holding `containers`), so templates added later (Jobs, CronJobs, sidecars) are covered
as soon as ci/everything-values.yaml turns them on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from scripts.package_chart import DEFAULT_URL

from tests.chart.fake_kube import FakeCluster, helm_config
from tests.chart.helm import CHART_DIR, NAMESPACE, everything_values, render
from tests.chart.readme import yaml_blocks

VERSION = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["version"]
REGISTRY = "mirror.corp.example:5000"
PULL_SECRETS = ["corp-pull", "team-pull"]
#: Names the chart gives regardless of the release: one generated Secret per namespace.
#: A second release (or a second instance in one parent) in the same namespace sets
#: chromadb.auth.existingSecret (README "Use as a dependency").
FIXED_NAMES = {("Secret", "chromadb-auth")}

PARENT_TEMPLATES = {
    # the parent's own objects, named the usual way: <release>-<parent chart>
    "app.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
spec:
  selector:
    matchLabels: {app: {{ .Release.Name }}-{{ .Chart.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-{{ .Chart.Name }}}
    spec:
      containers:
        - name: app
          image: {{ (.Values.global).imageRegistry | default "docker.io" }}/shop/app:1.0.0
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
spec:
  selector: {app: {{ .Release.Name }}-{{ .Chart.Name }}}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
stringData: {CHROMA_URL: "http://{{ .Release.Name }}-chromadb:8000"}
""",
}


def parent_chart(tmp_path: Path, dependencies: list[dict[str, Any]], values: dict[str, Any]) -> Path:
    parent = tmp_path / "shop"
    (parent / "templates").mkdir(parents=True)
    chart_yaml = {"apiVersion": "v2", "name": "shop", "version": "1.0.0", "dependencies": dependencies}
    (parent / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
    (parent / "values.yaml").write_text(yaml.safe_dump(values))
    for name, text in PARENT_TEMPLATES.items():
        (parent / "templates" / name).write_text(text)
    # resolve once (writes Chart.lock), then rebuild charts/ from the lock as CI would
    helm_python.dependency_update(parent)
    for archive in (parent / "charts").glob("*.tgz"):
        archive.unlink()
    helm_python.dependency_build(parent)
    assert (parent / "charts" / f"chromadb-{VERSION}.tgz").is_file()
    return parent


def dependency(alias: str | None = None) -> dict[str, Any]:
    dep = {"name": "chromadb", "version": VERSION, "repository": f"file://{CHART_DIR}"}
    if alias:
        dep["alias"] = alias
    return dep


def render_parent(
    parent: Path,
    release: str = "shop",
    values: dict[str, Any] | None = None,
    cluster: FakeCluster | None = None,
) -> dict[str, str]:
    with helm_python.Chart.load(parent) as chart:
        if cluster is None:
            return chart.render(values or {}, name=release, namespace=NAMESPACE)
        with helm_config(cluster, NAMESPACE) as config:
            return config.render(chart, values or {}, name=release, namespace=NAMESPACE)


def objects(templates: dict[str, str], prefix: str = "") -> list[dict[str, Any]]:
    found = []
    for path, text in templates.items():
        if path.startswith(prefix) and not path.endswith("NOTES.txt"):
            found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec inside an object, whatever its kind: any mapping holding `containers`."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from pod_specs(value)


def subchart_values() -> dict[str, Any]:
    values = everything_values()
    values.pop("global", None)
    return values


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[dict[str, str], list[dict[str, Any]]]:
    values = {
        "global": {"imageRegistry": REGISTRY, "imagePullSecrets": PULL_SECRETS},
        "chromadb": subchart_values(),
    }
    parent = parent_chart(tmp_path_factory.mktemp("single"), [dependency()], values)
    templates = render_parent(parent)
    return templates, objects(templates, "shop/charts/chromadb/")


def test_the_subchart_renders_inside_the_parent(single) -> None:
    templates, sub = single
    kinds = {o["kind"] for o in sub}
    assert {"StatefulSet", "Service", "Pod"} <= kinds
    assert any(path.startswith("shop/templates/") for path in templates)


def test_parent_globals_reach_every_pod_of_the_subchart(single) -> None:
    _, sub = single
    specs = [(o["kind"], o["metadata"]["name"], spec) for o in sub for spec in pod_specs(o)]
    assert len(specs) >= 3  # the server and the helm test pods, at least
    own = [s if isinstance(s, str) else s["name"] for s in subchart_values()["image"].get("pullSecrets", [])]
    expected = [{"name": s} for s in dict.fromkeys(PULL_SECRETS + own)]
    for kind, name, spec in specs:
        where = f"{kind}/{name}"
        assert spec.get("imagePullSecrets") == expected, where
        for container in spec.get("initContainers", []) + spec["containers"]:
            image = container["image"]
            assert image.startswith(f"{REGISTRY}/"), (where, container["name"], image)
            assert "ghcr.io" not in container["image"], (where, container["image"])


def fullname(release: str, chart_name: str) -> str:
    return release if chart_name in release else f"{release}-{chart_name}"


def assert_names_are_the_subcharts(sub: list[dict[str, Any]], prefix: str) -> None:
    for obj in sub:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key in FIXED_NAMES or obj["metadata"]["name"].startswith(prefix), (
            f"{key} is neither prefixed by the fullname {prefix} nor a documented fixed name"
        )


def test_subchart_names_are_prefixed_and_do_not_collide(single) -> None:
    templates, sub = single
    assert_names_are_the_subcharts(sub, fullname("shop", "chromadb"))
    counts = Counter((o["kind"], o["metadata"]["name"]) for o in objects(templates))
    assert [k for k, n in counts.items() if n > 1] == []


def selectors(obj: dict[str, Any]) -> list[dict[str, str]]:
    spec = obj.get("spec", {})
    if obj["kind"] == "Service":
        return [spec["selector"]] if spec.get("selector") else []
    if obj["kind"] == "NetworkPolicy":
        return [spec["podSelector"].get("matchLabels", {})]
    if "selector" in spec and isinstance(spec["selector"], dict):
        return [spec["selector"].get("matchLabels", {})]
    return []


def pod_labels(obj: dict[str, Any]) -> dict[str, str] | None:
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    template = obj.get("spec", {}).get("template")
    return template["metadata"].get("labels", {}) if template else None


@pytest.fixture(scope="module")
def twice(tmp_path_factory) -> dict[str, str]:
    """Two instances of the chart in one parent, as the README shows: the second (alias `archive`)
    brings its own credentials Secret."""
    _, _, dependencies, values = readme_dependencies()
    assert [d.get("alias") for d in dependencies] == [None, "archive"]
    return render_parent(parent_chart(tmp_path_factory.mktemp("twice"), local(dependencies), values))


Dependencies = list[dict[str, Any]]


def readme_dependencies() -> tuple[Dependencies, dict[str, Any], Dependencies, dict[str, Any]]:
    """The README's examples: one dependency and its values, then two instances and theirs."""
    single_chart, single_values, twice_chart, twice_values = yaml_blocks("Use as a dependency")
    return single_chart["dependencies"], single_values, twice_chart["dependencies"], twice_values


def local(dependencies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The README's dependencies, resolved from this checkout instead of the published repository."""
    for dep in dependencies:
        assert dep["name"] == "chromadb" and dep["version"] == VERSION, dep
        assert dep["repository"] in (DEFAULT_URL, "oci://ghcr.io/chromadb-chart/charts"), dep
    return [{**dep, "repository": f"file://{CHART_DIR}"} for dep in dependencies]


def test_the_readme_example_installs_with_its_values(tmp_path: Path) -> None:
    dependencies, values, _, _ = readme_dependencies()
    parent = parent_chart(tmp_path, local(dependencies), values)
    sub = objects(render_parent(parent), "shop/charts/chromadb/")
    sts = next(o for o in sub if o["kind"] == "StatefulSet")
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert claim == values["chromadb"]["chromadb"]["dataVolumeSize"]
    for obj in sub:
        for spec in pod_specs(obj):
            assert spec["imagePullSecrets"] == [{"name": s} for s in values["global"]["imagePullSecrets"]]
            registry = values["global"]["imageRegistry"]
            assert all(c["image"].startswith(registry + "/") for c in spec["containers"])


def test_two_instances_in_one_parent_do_not_collide(twice) -> None:
    counts = Counter((o["kind"], o["metadata"]["name"]) for o in objects(twice))
    assert [k for k, n in counts.items() if n > 1] == []
    assert_names_are_the_subcharts(objects(twice, "shop/charts/archive/"), fullname("shop", "archive"))


def test_selectors_only_pick_their_own_instance(twice) -> None:
    instances = {name: objects(twice, f"shop/charts/{name}/") for name in ("chromadb", "archive")}
    for name, objs in instances.items():
        for obj in objs:
            for selector in selectors(obj):
                if not selector:
                    continue
                for other, other_objs in instances.items():
                    hits = [
                        o["metadata"]["name"]
                        for o in other_objs
                        if (labels := pod_labels(o)) is not None
                        and all(labels.get(k) == v for k, v in selector.items())
                    ]
                    where = f"{name}: {obj['kind']}/{obj['metadata']['name']} selects {hits} of {other}"
                    # its own pods, never the other instance's
                    assert bool(hits) == (other == name), where


def test_a_second_instance_without_its_own_secret_collides_on_the_fixed_name(tmp_path: Path) -> None:
    """Why FIXED_NAMES is documented: both instances would generate the same Secret."""
    parent = parent_chart(tmp_path, [dependency(), dependency("archive")], {})
    counts = Counter((o["kind"], o["metadata"]["name"]) for o in objects(render_parent(parent)))
    assert {k for k, n in counts.items() if n > 1} == FIXED_NAMES


def test_a_second_release_in_the_namespace(tmp_path: Path) -> None:
    """Release `shop` is installed; release `outlet` of the same parent goes next to it."""
    parent = parent_chart(tmp_path, [dependency()], {})
    first = objects(render_parent(parent, "shop"))
    cluster = FakeCluster()
    for obj in first:
        annotations = obj["metadata"].setdefault("annotations", {})
        annotations["meta.helm.sh/release-name"] = "shop"
        cluster.add(obj, NAMESPACE)
    # the generated Secret of `shop` is not taken over: the chart refuses, naming the fix
    with pytest.raises(helm_python.HelmError, match=r"chromadb\.auth\.existingSecret"):
        render_parent(parent, "outlet", cluster=cluster)
    second = objects(
        render_parent(
            parent,
            "outlet",
            {"chromadb": {"chromadb": {"auth": {"existingSecret": "outlet-credentials"}}}},
            cluster=cluster,
        )
    )
    assert keys(first) & keys(second) == set()
    assert any("/namespaces/vectors/secrets/chromadb-auth" in r for r in cluster.requests)


def keys(objs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objs}


def comparable(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"]["name"], yaml.safe_dump(obj.get("spec"), sort_keys=True)


def test_inside_a_parent_it_renders_what_it_renders_alone(single) -> None:
    _, sub = single
    values = subchart_values()
    values["global"] = {"imageRegistry": REGISTRY, "imagePullSecrets": PULL_SECRETS}
    alone = render(values, release="shop")
    volatile = {"Secret"}  # generated credentials differ per render
    assert {comparable(o) for o in sub if o["kind"] not in volatile} == {
        comparable(o) for o in alone.objects if o["kind"] not in volatile
    }
