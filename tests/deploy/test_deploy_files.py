"""The deployment files (deploy/) parse and agree with the code: the port the
server listens on, the health service it registers (asked of a real server),
its settings and store URL schemes, the replica counts the topology promises,
and selectors that point at the Deployment's pods.

No image or chart can be pulled here: this is a static check, plus
``kubectl kustomize`` when kubectl is installed."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from hashshare.api import healthcheck
from hashshare.api.server import SERVICE_NAMES
from hashshare.settings import ENV_PREFIX, Settings
from tests.conftest import ServerFactory

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PORT = int(Settings().listen.rsplit(":", 1)[1])
SETTINGS = {ENV_PREFIX + f.name.upper(): f for f in fields(Settings)}
# redis+cluster:// is the Redis Cluster store (issue 5), built alongside these files.
STORE_SCHEMES = ("sqlite:///", "redis://", "rediss://", "unix://", "redis+cluster://")
REPLICAS = 3
REDIS_NODES = 6


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s_objects() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization, by kind (each kind appears once)."""
    kustomization = load(K8S / "kustomization.yaml")
    objects: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / resource).read_text()):
            assert document["kind"] not in objects, f"two {document['kind']} objects"
            objects[document["kind"]] = document
    return objects


def compose() -> dict[str, Any]:
    return load(DEPLOY / "docker-compose.yml")  # type: ignore[no-any-return]


def envoy() -> dict[str, Any]:
    return load(DEPLOY / "envoy.yaml")  # type: ignore[no-any-return]


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the final stage, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, arguments in dockerfile():
        if name == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def container() -> dict[str, Any]:
    return k8s_objects()["Deployment"]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def settings_in_files() -> list[tuple[str, str, str]]:
    """(file, variable, value) of every HASHSHARE_* variable the files set."""
    found = [("Dockerfile", k, v) for k, v in dockerfile_env().items() if k.startswith(ENV_PREFIX)]
    found += [("docker-compose.yml", k, str(v)) for k, v in compose()["services"]["hashshare"]["environment"].items()]
    found += [("configmap.yaml", k, v) for k, v in k8s_objects()["ConfigMap"]["data"].items()]
    found += [("deployment.yaml", e["name"], e.get("value", "")) for e in container()["env"]]
    return [(where, name, value) for where, name, value in found if name.startswith(ENV_PREFIX)]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_every_hashshare_variable_is_a_setting_with_a_value_of_its_type() -> None:
    found = settings_in_files()
    assert {name for _, name, _ in found} >= {"HASHSHARE_LISTEN", "HASHSHARE_STORE", "HASHSHARE_WORKERS"}
    for where, name, value in found:
        assert name in SETTINGS, f"{where}: {name} is not a setting (settings.py)"
        default = SETTINGS[name].default
        kind = type(default) if default is not MISSING else str
        kind(value)  # what `serve` does with the variable: fails on "two" for an int


def test_store_urls_use_schemes_the_server_accepts() -> None:
    stores = [(where, value) for where, name, value in settings_in_files() if name == "HASHSHARE_STORE"]
    assert {where for where, _ in stores} == {"Dockerfile", "docker-compose.yml", "deployment.yaml"}
    for where, url in stores:
        assert url.startswith(STORE_SCHEMES), f"{where}: {url}"
    assert all(url.startswith("redis+cluster://") for where, url in stores if where != "Dockerfile")


def test_every_file_uses_the_port_the_server_listens_on() -> None:
    listens = [(where, value) for where, name, value in settings_in_files() if name == "HASHSHARE_LISTEN"]
    assert len(listens) == 3 and all(port_of(value) == PORT for _, value in listens), listens
    assert ("EXPOSE", str(PORT)) in dockerfile()
    hashshare = compose()["services"]["hashshare"]
    assert [int(p) for p in hashshare["expose"]] == [PORT]
    (endpoint,) = envoy()["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "hashshare", "port_value": PORT}
    (listener,) = envoy()["static_resources"]["listeners"]
    published = [p.split(":") for p in compose()["services"]["envoy"]["ports"]]
    assert [int(inside) for _, inside in published] == [listener["address"]["socket_address"]["port_value"]]
    (port,) = container()["ports"]
    assert port["containerPort"] == PORT
    (service_port,) = k8s_objects()["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], PORT)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container()[probe]["grpc"]["port"] == PORT


def test_the_dockerfile_runs_serve_configured_by_the_environment() -> None:
    (entrypoint,) = [yaml.safe_load(arguments) for name, arguments in dockerfile() if name == "ENTRYPOINT"]
    assert entrypoint == ["hashshare-server", "serve"]
    assert 'hashshare-server = "hashshare.cli:main"' in (ROOT / "pyproject.toml").read_text()
    # A flag in CMD would override the HASHSHARE_* variables compose and Kubernetes set.
    assert not [arguments for name, arguments in dockerfile() if name == "CMD"]
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"


def health_services_in_files() -> dict[str, str]:
    """Where each health check or probe names the service it asks about."""
    services = {f"k8s {probe}": container()[probe]["grpc"].get("service", "") for probe in
                ("startupProbe", "readinessProbe", "livenessProbe")}  # fmt: skip
    for cluster in envoy()["static_resources"]["clusters"]:
        for check in cluster["health_checks"]:
            services[f"envoy {cluster['name']}"] = check["grpc_health_check"].get("service_name", "")
    (healthcheck_line,) = [arguments for name, arguments in dockerfile() if name == "HEALTHCHECK"]
    command = yaml.safe_load(healthcheck_line.split("CMD", 1)[1])
    assert command[:3] == ["python", "-m", "hashshare.api.healthcheck"]
    services["Dockerfile HEALTHCHECK"] = command[command.index("--service") + 1] if "--service" in command else ""
    return services


def test_probes_and_health_checks_ask_a_health_service_the_server_registers(server_factory: ServerFactory) -> None:
    running = server_factory()
    target = f"127.0.0.1:{running.port}"
    for where, service in health_services_in_files().items():
        assert service in ("", *SERVICE_NAMES), f"{where}: {service!r}"
        assert healthcheck.check(target, service), f"{where}: {service!r} is not SERVING on a real server"
    assert not healthcheck.check(target, "hashshare.v1.NoSuchService")
    # The image's HEALTHCHECK command itself, against the real server.
    assert healthcheck.main([target]) == 0
    running.stop(grace=0)
    assert healthcheck.main([target, "--timeout", "0.5"]) == 1


def test_envoy_balances_grpc_calls_over_http2_with_grpc_health_checks() -> None:
    (cluster,) = envoy()["static_resources"]["clusters"]
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert cluster["type"] == "STRICT_DNS"  # every replica behind the compose service name
    assert all("grpc_health_check" in check for check in cluster["health_checks"])
    (listener,) = envoy()["static_resources"]["listeners"]
    (manager,) = listener["filter_chains"][0]["filters"]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert {route["route"]["cluster"] for route in routes} == {cluster["name"]}
    assert manager["typed_config"]["http_filters"][-1]["name"] == "envoy.filters.http.router"
    volumes = compose()["services"]["envoy"]["volumes"]
    assert any(v.split(":")[0] == "./envoy.yaml" for v in volumes)


def test_compose_runs_three_replicas_on_a_six_node_redis_cluster() -> None:
    services = compose()["services"]
    assert services["hashshare"]["deploy"]["replicas"] == REPLICAS
    nodes = [name for name, s in services.items() if "--cluster-enabled yes" in str(s.get("command", ""))]
    assert len(nodes) == REDIS_NODES
    create = services["redis-cluster-create"]
    assert set(create["depends_on"]) == set(nodes)
    assert "--cluster-replicas 1" in create["command"] and "--cluster-yes" in create["command"]
    assert "for n in 1 2 3 4 5 6" in create["command"] and nodes == [f"redis-{n}" for n in range(1, 7)]
    depends = services["hashshare"]["depends_on"]
    assert depends["redis-cluster-create"]["condition"] == "service_completed_successfully"
    store = services["hashshare"]["environment"]["HASHSHARE_STORE"]
    seeds = store.removeprefix("redis+cluster://").split(",")
    assert all(seed.split(":")[0] in nodes and port_of(seed) == 6379 for seed in seeds)
    for service in services.values():
        for other in service.get("depends_on", []):
            assert other in services


def test_kubernetes_objects_select_the_deployments_pods() -> None:
    objects = k8s_objects()
    assert set(objects) >= {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap"}
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == REPLICAS
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= REPLICAS
    (source,) = container()["envFrom"]
    assert source["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert set(container()[probe]) & {"grpc", "exec", "httpGet", "tcpSocket"} == {"grpc"}
    # The pod must outlive its drain: preStop pause plus --grace-seconds.
    grace = float(objects["ConfigMap"]["data"]["HASHSHARE_GRACE_SECONDS"])
    pause = float(container()["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace + pause


def test_the_redis_cluster_comes_from_the_chart_with_six_nodes() -> None:
    values = load(K8S / "redis-cluster-values.yaml")
    assert values["cluster"]["nodes"] == REDIS_NODES and values["cluster"]["replicas"] == 1
    store = next(e for e in container()["env"] if e["name"] == "HASHSHARE_STORE")["value"]
    password = next(e for e in container()["env"] if e["name"] == "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]
    # The chart names its Service and Secret after fullnameOverride.
    assert password["name"] == values["fullnameOverride"]
    assert re.fullmatch(rf"redis\+cluster://:\$\(REDIS_PASSWORD\)@{values['fullnameOverride']}:6379", store)
    # $(VAR) only expands variables defined earlier in the list.
    names = [e["name"] for e in container()["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("HASHSHARE_STORE")
    readme = (K8S / "README.md").read_text()
    assert (
        "helm install" in readme and "bitnamicharts/redis-cluster" in readme and "redis-cluster-values.yaml" in readme
    )
    assert not any(o["kind"] in ("StatefulSet",) for o in k8s_objects().values()), "Redis is the chart's, not ours"


def test_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # the structural checks above still ran
        pytest.skip("kubectl is not installed")
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    kinds = [document["kind"] for document in yaml.safe_load_all(built.stdout)]
    assert sorted(kinds) == sorted(o["kind"] for o in k8s_objects().values())
