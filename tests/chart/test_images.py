"""The `image`, `chromactl.image` and `global` values: how image references and pull secrets render."""

from __future__ import annotations

import pytest

from tests.chart.helm import chart, everything_values, names_key, render, render_error

DIGEST = "sha256:" + "b" * 64


def images(r) -> set[str]:
    found = set()
    for _, spec in r.pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            found.add(c["image"])
    return found


def test_default_references_split_registry_and_repository(default) -> None:
    version = chart().metadata["version"]
    assert default.container()["image"] == "ghcr.io/chroma-core/chroma:1.5.9"
    assert default.container("gateway")["image"] == f"ghcr.io/chromadb-chart/chromactl:{version}"


def test_global_registry_replaces_every_registry_and_keeps_paths() -> None:
    values = everything_values()
    values["global"] = {"imageRegistry": "mirror.example:5000"}
    found = images(render(values))
    assert found, "no pod rendered"
    assert all(ref.startswith("mirror.example:5000/") for ref in found), found
    assert not any("ghcr.io" in ref for ref in found), found
    assert "mirror.example:5000/chroma-core/chroma:1.5.9" in found


def test_image_registry_tag_and_digest() -> None:
    r = render({"image": {"registry": "registry.example", "tag": "1.5.8"}})
    assert r.container()["image"] == "registry.example/chroma-core/chroma:1.5.8"
    r = render({"chromactl": {"image": {"digest": DIGEST, "tag": "ignored"}}})
    assert r.container("gateway")["image"] == f"ghcr.io/chromadb-chart/chromactl@{DIGEST}"
    # global wins over the per-image registry, and the digest survives it
    r = render(
        {"global": {"imageRegistry": "g.example"}, "image": {"registry": "i.example", "digest": DIGEST}}
    )
    assert r.container()["image"] == f"g.example/chroma-core/chroma@{DIGEST}"


def test_empty_registry_means_the_bare_repository() -> None:
    r = render({"image": {"registry": "", "repository": "myorg/chroma", "tag": "1.5.9"}})
    assert r.container()["image"] == "myorg/chroma:1.5.9"


@pytest.mark.parametrize("key", ["image", "chromactl.image"])
def test_a_registry_host_in_repository_is_refused_with_the_key_to_change(key) -> None:
    values: dict = {}
    target = values
    for part in key.split("."):
        target = target.setdefault(part, {})
    target["repository"] = "ghcr.io/chroma-core/chroma"
    message = render_error(values)
    assert names_key(message, f"{key}.registry") and names_key(message, f"{key}.repository"), message


def test_pull_secrets_reach_every_pod_of_everything_values() -> None:
    values = everything_values()
    values["global"] = {"imagePullSecrets": [{"name": "corp"}, "corp"]}
    values.setdefault("image", {})["pullSecrets"] = ["extra"]
    r = render(values)
    specs = list(r.pod_specs())
    assert len(specs) >= 3  # the server and the helm test pods at least
    for name, spec in specs:
        assert spec.get("imagePullSecrets") == [{"name": "corp"}, {"name": "extra"}], name


def test_no_pull_secrets_renders_no_key(default) -> None:
    for name, spec in default.pod_specs():
        assert "imagePullSecrets" not in spec, name


def test_a_malformed_pull_secret_is_refused() -> None:
    message = render_error({"global": {"imagePullSecrets": [{"secret": "x"}]}})
    assert "imagePullSecrets" in message
