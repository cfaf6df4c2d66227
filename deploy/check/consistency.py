"""Checks that the files in deploy/ agree with each other.

Schema validators look at one document at a time; this looks across them,
for the mistakes that only show when the pieces meet: a manifest missing from
kustomization.yaml, a volume naming a ConfigMap that does not exist, a probe
or Service on a port the container does not open, a token file outside the
Secret's mount, an embedded TOML file that does not parse. For the clusters
(compose.cluster.yaml with nats.conf, kubernetes/cluster/): a NATS server
that acknowledges before its fsync (no `sync_interval: always`), routes or
baa-logd NATS URLs that miss a server, NATS servers sharing a volume.

Run by scripts/check-deploy.sh with the Python of deploy/check/.venv
(PyYAML; tomllib needs Python 3.11). Prints one line per problem and exits 1
if there is any.
"""

import pathlib
import re
import sys
import tomllib

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
KUBERNETES = DEPLOY / "kubernetes"
CLUSTER = KUBERNETES / "cluster"

problems: list[str] = []


def check(condition: bool, problem: str) -> None:
    """Records `problem` unless `condition` holds."""
    if not condition:
        problems.append(problem)


def parse_toml(text: str, where: str) -> dict:
    """Parses TOML, recording a problem (and returning {}) if it does not."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        problems.append(f"{where}: not valid TOML: {err}")
        return {}


def check_tokens(tokens: dict, where: str) -> None:
    """Each [[tokens]] entry has a name, known scopes, and one credential."""
    entries = tokens.get("tokens")
    check(isinstance(entries, list) and entries, f"{where}: no [[tokens]] entries")
    for index, entry in enumerate(entries or []):
        at = f"{where}: tokens[{index}]"
        check(bool(entry.get("name")), f"{at}: no name")
        scopes = entry.get("scopes", [])
        check(bool(scopes), f"{at}: no scopes")
        check(
            set(scopes) <= {"read", "write", "admin"},
            f"{at}: unknown scopes {sorted(set(scopes) - {'read', 'write', 'admin'})}",
        )
        check(
            ("secret" in entry) != ("sha256" in entry),
            f"{at}: needs exactly one of secret and sha256",
        )
        digest = entry.get("sha256", "0" * 64)
        check(
            len(digest) == 64 and all(c in "0123456789abcdef" for c in digest),
            f"{at}: sha256 is not 64 lower-case hex digits",
        )


def load_manifests(directory: pathlib.Path, where: str) -> tuple[dict, dict]:
    """The kustomization and the manifests of `directory` by kind and name.

    Checks that kustomization.yaml lists exactly the manifests there and
    sets the baa-logd image.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    check(
        listed == present,
        f"{where}kustomization.yaml: resources "
        f"{sorted(listed)} differ from the manifests {sorted(present)}",
    )
    by_kind: dict[str, dict[str, dict]] = {}
    for name in sorted(present):
        for document in yaml.safe_load_all((directory / name).read_text()):
            if document:
                by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    return kustomization, by_kind


def the_one(by_kind: dict, kind: str, where: str, name: str | None = None) -> dict | None:
    """The manifest of `kind` (named `name`, or the only one), recording a
    problem if there is none or, without a name, several."""
    documents = by_kind.get(kind, {})
    if name is not None:
        check(name in documents, f"{where}: no {kind} {name}")
        return documents.get(name)
    check(len(documents) == 1, f"{where}: not exactly one {kind}")
    return next(iter(documents.values())) if len(documents) == 1 else None


def container_ports(container: dict) -> dict[str, int]:
    """The container's ports by name."""
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def check_service(service: dict, pod: dict, ports: dict[str, int], where: str) -> None:
    """The Service selects the pods and targets ports the container opens."""
    name = service["metadata"]["name"]
    check(
        service["spec"]["selector"].items() <= pod["metadata"]["labels"].items(),
        f"{where}: the Service {name}'s selector does not select the pods",
    )
    for port in service["spec"]["ports"]:
        check(
            port["targetPort"] in ports or port["targetPort"] in ports.values(),
            f"{where}: Service {name} port {port['name']} targets {port['targetPort']}, "
            "which the container does not open",
        )


def claim_names(workload: dict) -> set[str]:
    """The names of a StatefulSet's volume claim templates (none for a
    Deployment)."""
    return {claim["metadata"]["name"] for claim in workload["spec"].get("volumeClaimTemplates", [])}


def mounted_files(workload: dict, container: dict, by_kind: dict, where: str) -> dict[str, dict]:
    """Each ConfigMap or Secret volume the container of `workload` mounts,
    by mount path: its files. Records volumes without a ConfigMap or
    Secret, and mounts without a volume."""
    pod = workload["spec"]["template"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    claims = claim_names(workload)
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
    for name in mounts:
        check(name in volumes or name in claims, f"{where}: volume mount {name} has no volume")
    files = {}
    for name, volume in volumes.items():
        if "configMap" in volume:
            config_map = by_kind.get("ConfigMap", {}).get(volume["configMap"]["name"])
            check(config_map is not None, f"{where}: volume {name}: no such ConfigMap")
            if config_map and name in mounts:
                files[mounts[name]] = config_map["data"]
        if "secret" in volume:
            secret = by_kind.get("Secret", {}).get(volume["secret"]["secretName"])
            check(secret is not None, f"{where}: volume {name}: no such Secret")
            if secret and name in mounts:
                files[mounts[name]] = secret.get("stringData", {})
    return files


def mounted_file(path: str, files: dict[str, dict]) -> str | None:
    """The text of `path` in the mounted ConfigMaps and Secrets, if it is one
    of their files."""
    directory, name = path.rsplit("/", 1)
    return files.get(directory, {}).get(name)


def check_baa_logd(workload: dict, service: dict, by_kind: dict, where: str) -> dict:
    """The baa-logd pods of `workload` (a StatefulSet or Deployment) and its
    Service: ports, probes, the mounted configuration and token file.
    Returns the configuration ({} if there is none)."""
    pod = workload["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = container_ports(container)
    check_service(service, pod, ports, where)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check(probe in container, f"{where}: the container has no {probe}")
        port = container.get(probe, {}).get("grpc", {}).get("port")
        check(port == ports.get("grpc"), f"{where}: {probe} is not a gRPC probe on the grpc port")
    check(
        container.get("livenessProbe", {}).get("grpc", {}).get("service") == "liveness",
        f"{where}: livenessProbe must ask the `liveness` health service, "
        "which a full disk leaves SERVING",
    )
    files = mounted_files(workload, container, by_kind, where)
    args = container.get("args", [])
    check("--config" in args, f"{where}: the container is not given --config")
    if "--config" not in args:
        return {}
    config_path = args[args.index("--config") + 1]
    text = mounted_file(config_path, files)
    check(text is not None, f"{where}: --config {config_path} is not a file of a mounted ConfigMap")
    config = parse_toml(text or "", f"{where}: {config_path}")
    token_file = config.get("token_file", "")
    check(bool(token_file), f"{where}: {config_path} sets no token_file")
    if token_file:
        tokens = mounted_file(token_file, files)
        check(
            tokens is not None,
            f"{where}: token_file {token_file} is not a file of a mounted Secret",
        )
        check_tokens(parse_toml(tokens or "", f"{where}: {token_file}"), f"{where}: Secret")
    return config


def check_image(kustomization: dict, container: dict, where: str) -> None:
    """kustomization.yaml sets the container's image."""
    images = {image["name"] for image in kustomization.get("images", [])}
    check(container["image"] in images, f"{where}kustomization.yaml does not set the image")


def check_single_node() -> None:
    """deploy/kubernetes/: one baa-logd in a StatefulSet, runs on its volume."""
    kustomization, by_kind = load_manifests(KUBERNETES, "kubernetes/")
    kinds = ("StatefulSet", "Service", "ConfigMap", "Secret")
    found = {kind: the_one(by_kind, kind, "kubernetes/") for kind in kinds}
    if any(document is None for document in found.values()):
        return
    statefulset, service = found["StatefulSet"], found["Service"]
    check(
        statefulset["spec"]["serviceName"] == service["metadata"]["name"],
        "kubernetes/: StatefulSet serviceName is not the Service",
    )
    check_baa_logd(statefulset, service, by_kind, "kubernetes/")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    check_image(kustomization, container, "kubernetes/")


def nats_conf(text: str) -> str:
    """A NATS configuration without its comments."""
    return re.sub(r"(?m)(^|\s)(#|//).*$", "", text)


def check_nats_conf(text: str, where: str, routes: list[str], ports: dict[str, int]) -> None:
    """A NATS server's configuration for baa-logd: JetStream syncing every
    write, messages of 8 MB, clustered with `routes`, listening on `ports`
    (client, cluster and, if given, monitor)."""
    conf = nats_conf(text)
    check(
        re.search(r"\bjetstream\s*[:=]?\s*\{[^}]*\bsync_interval\s*[:=]\s*always\b", conf)
        is not None,
        f"{where}: JetStream without `sync_interval: always` acknowledges before its fsync",
    )
    check(
        re.search(r"\bmax_payload\s*[:=]\s*8MB\b", conf) is not None,
        f"{where}: max_payload is not 8MB",
    )
    found = re.findall(r"nats-route://[\w.-]+:\d+", conf)
    check(sorted(found) == sorted(routes), f"{where}: routes {found}, expected {routes}")
    listens = {
        "client": r"^\s*listen\s*[:=]\s*[\d.]*:(\d+)",
        "cluster": r"\bcluster\s*[:=]?\s*\{[^}]*\blisten\s*[:=]\s*[\d.]*:(\d+)",
        "monitor": r"^\s*http\s*[:=]\s*[\d.]*:(\d+)",
    }
    for name, port in ports.items():
        match = re.search(listens[name], conf, re.MULTILINE)
        check(
            match is not None and int(match.group(1)) == port,
            f"{where}: does not listen for {name} connections on {port}",
        )


def check_nats_image(image: str, where: str) -> None:
    """The official NATS image, 2.12 or newer (sync_interval, and the
    release the store is tested with)."""
    match = re.fullmatch(r"nats:(\d+)\.(\d+)(\.\d+)?(-alpine)?", image)
    check(
        match is not None and (int(match.group(1)), int(match.group(2))) >= (2, 12),
        f"{where}: image {image} is not nats:2.12 or newer",
    )


def check_nats_urls(config: dict, expected: list[str], where: str) -> None:
    """A baa-logd configuration keeps its runs on the NATS servers `expected`."""
    check(config.get("store") == "jetstream", f"{where}: store is not \"jetstream\"")
    urls = config.get("nats", {}).get("url", [])
    check(sorted(urls) == sorted(expected), f"{where}: nats.url {urls}, expected {expected}")
    replicas = config.get("nats", {}).get("replicas", 3)
    check(
        replicas <= len(expected),
        f"{where}: nats.replicas {replicas} is more than the {len(expected)} servers",
    )


def check_cluster() -> None:
    """deploy/kubernetes/cluster/: baa-logd nodes in a Deployment on a NATS
    StatefulSet."""
    where = "kubernetes/cluster/"
    kustomization, by_kind = load_manifests(CLUSTER, where)
    deployment = the_one(by_kind, "Deployment", where, "baa-logd")
    service = the_one(by_kind, "Service", where, "baa-logd")
    nats = the_one(by_kind, "StatefulSet", where, "nats")
    if deployment is None or service is None or nats is None:
        return
    check(deployment["spec"]["replicas"] >= 2, f"{where}: fewer than two baa-logd nodes")
    config = check_baa_logd(deployment, service, by_kind, where)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    check_image(kustomization, container, where)
    # With a read-only root, the data dir (the run page's session key) is
    # a volume.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    check(
        "emptyDir" in volumes.get(mounts.get("/var/lib/baa-logd", ""), {}),
        f"{where}: the data dir /var/lib/baa-logd is not an emptyDir volume",
    )

    # The NATS servers: a headless Service names each pod.
    replicas = nats["spec"]["replicas"]
    check(replicas == 3, f"{where}: the NATS StatefulSet does not have 3 replicas")
    headless = by_kind.get("Service", {}).get(nats["spec"]["serviceName"])
    check(headless is not None, f"{where}: the NATS StatefulSet's serviceName is no Service")
    pod = nats["spec"]["template"]
    (server,) = pod["spec"]["containers"]
    check_nats_image(server["image"], where)
    ports = container_ports(server)
    if headless:
        check(headless["spec"].get("clusterIP") == "None", f"{where}: Service nats is not headless")
        check_service(headless, pod, ports, where)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = server.get(probe, {}).get("httpGet", {}).get("port")
        check(
            port in ("monitor", ports.get("monitor")),
            f"{where}: NATS {probe} is not on the monitoring port",
        )
    files = mounted_files(nats, server, by_kind, where)
    args = server.get("args", [])
    check("--config" in args, f"{where}: nats-server is not given --config")
    text = mounted_file(args[args.index("--config") + 1], files) if "--config" in args else None
    check(text is not None, f"{where}: nats-server's --config is not a file of a mounted ConfigMap")
    name, service_name = nats["metadata"]["name"], nats["spec"]["serviceName"]
    pods = [f"{name}-{index}.{service_name}" for index in range(replicas)]
    if text is not None:
        check_nats_conf(
            text,
            f"{where}: nats.conf",
            [f"nats-route://{host}:{ports['cluster']}" for host in pods],
            {key: ports[key] for key in ("client", "cluster", "monitor")},
        )
        store_dir = re.search(r"\bstore_dir\s*[:=]\s*\"?([^\s\"]+)", nats_conf(text))
        mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
        check(
            store_dir is not None and mounts.get(store_dir.group(1)) in claim_names(nats),
            f"{where}: JetStream's store_dir is not the persistent volume",
        )
    check_nats_urls(config, [f"nats://{host}:{ports['client']}" for host in pods], where)


def check_compose_cluster() -> None:
    """compose.cluster.yaml: baa-logd nodes on three NATS servers, each with
    its own volume, configured by nats.conf."""
    where = "compose.cluster.yaml"
    compose = yaml.safe_load((DEPLOY / where).read_text())
    services = compose["services"]
    nats = sorted(
        name for name, service in services.items() if service.get("image", "").startswith("nats:")
    )
    nodes = sorted(name for name, service in services.items() if name.startswith("baa-logd"))
    check(len(nats) == 3, f"{where}: not three NATS servers: {nats}")
    check(len(nodes) >= 2, f"{where}: fewer than two baa-logd nodes: {nodes}")
    data_volumes = []
    conf_files = set()
    for name in nats:
        service = services[name]
        check_nats_image(service["image"], f"{where}: {name}")
        check(
            service.get("environment", {}).get("SERVER_NAME") == name,
            f"{where}: {name} does not name itself {name} (SERVER_NAME)",
        )
        data = [v.split(":")[0] for v in service.get("volumes", []) if v.split(":")[1] == "/data"]
        check(len(data) == 1, f"{where}: {name} has no volume at /data")
        data_volumes += data
        for config in service.get("configs", []):
            source = compose.get("configs", {}).get(config["source"], {})
            check("file" in source, f"{where}: {name}: config {config['source']} has no file")
            if "file" in source:
                conf_files.add(source["file"].removeprefix("./"))
        check(bool(service.get("configs")), f"{where}: {name} is given no nats.conf")
    for conf_file in sorted(conf_files):
        check_nats_conf(
            (DEPLOY / conf_file).read_text(),
            f"deploy/{conf_file}",
            [f"nats-route://{other}:6222" for other in nats],
            {"client": 4222, "cluster": 6222, "monitor": 8222},
        )
    check(
        len(set(data_volumes)) == len(data_volumes)
        and set(data_volumes) <= set(compose.get("volumes", {})),
        f"{where}: the NATS servers do not each have a named volume of their own: {data_volumes}",
    )
    urls = sorted(f"nats://{name}:4222" for name in nats)
    published = []
    for name in nodes:
        command = services[name].get("command", [])

        def flag(key: str, command: list = command) -> str | None:
            return command[command.index(key) + 1] if key in command else None

        check(flag("--store") == "jetstream", f"{where}: {name} is not given --store jetstream")
        given = sorted((flag("--nats-url") or "").split(","))
        check(given == urls, f"{where}: {name}'s --nats-url {given}, expected {urls}")
        published += [port.rsplit(":", 2)[-2] for port in services[name].get("ports", [])]
    check(
        len(set(published)) == len(published),
        f"{where}: the baa-logd nodes publish a host port twice: {published}",
    )


def main() -> int:
    for name in ("config.example.toml", "tokens.example.toml"):
        parse_toml((DEPLOY / name).read_text(), f"deploy/{name}")
    check_tokens(
        parse_toml((DEPLOY / "tokens.example.toml").read_text(), "tokens.example.toml"),
        "deploy/tokens.example.toml",
    )
    check_single_node()
    check_cluster()
    check_compose_cluster()
    return report()


def report() -> int:
    """Prints the problems found; the exit code."""
    for problem in problems:
        print(f"deploy/: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
