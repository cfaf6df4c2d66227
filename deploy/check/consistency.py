"""Checks that the files in deploy/ agree with each other.

Schema validators look at one document at a time; this looks across them,
for the mistakes that only show when the pieces meet: a manifest missing from
kustomization.yaml, a volume naming a ConfigMap that does not exist, a probe
or Service on a port the container does not open, a token file outside the
Secret's mount, an embedded TOML file that does not parse.

Run by scripts/check-deploy.sh with the Python of deploy/check/.venv
(PyYAML; tomllib needs Python 3.11). Prints one line per problem and exits 1
if there is any.
"""

import pathlib
import sys
import tomllib

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
KUBERNETES = DEPLOY / "kubernetes"

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


def main() -> int:
    for name in ("config.example.toml", "tokens.example.toml"):
        parse_toml((DEPLOY / name).read_text(), f"deploy/{name}")
    check_tokens(
        parse_toml((DEPLOY / "tokens.example.toml").read_text(), "tokens.example.toml"),
        "deploy/tokens.example.toml",
    )

    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    check(
        listed == present,
        "kubernetes/kustomization.yaml: resources "
        f"{sorted(listed)} differ from the manifests {sorted(present)}",
    )

    documents = [
        document
        for name in sorted(present)
        for document in yaml.safe_load_all((KUBERNETES / name).read_text())
        if document
    ]
    by_kind: dict[str, dict[str, dict]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document

    kinds = ("StatefulSet", "Service", "ConfigMap", "Secret")
    for kind in kinds:
        check(len(by_kind.get(kind, {})) == 1, f"kubernetes/: not exactly one {kind}")
    if any(len(by_kind.get(kind, {})) != 1 for kind in kinds):
        return report()
    (statefulset,) = by_kind["StatefulSet"].values()
    (service,) = by_kind["Service"].values()
    pod = statefulset["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}

    check(
        statefulset["spec"]["serviceName"] == service["metadata"]["name"],
        "StatefulSet serviceName is not the Service",
    )
    check(
        service["spec"]["selector"].items() <= pod["metadata"]["labels"].items(),
        "the Service's selector does not select the StatefulSet's pods",
    )
    for port in service["spec"]["ports"]:
        check(
            port["targetPort"] in ports or port["targetPort"] in ports.values(),
            f"Service port {port['name']} targets {port['targetPort']}, "
            "which the container does not open",
        )
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check(probe in container, f"the container has no {probe}")
        port = container.get(probe, {}).get("grpc", {}).get("port")
        check(port == ports.get("grpc"), f"{probe} is not a gRPC probe on the grpc port")
    check(
        container.get("livenessProbe", {}).get("grpc", {}).get("service") == "liveness",
        "livenessProbe must ask the `liveness` health service, which a full disk leaves SERVING",
    )

    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    for name in mounts:
        check(name in volumes or name in claims, f"volume mount {name} has no volume")
    config_file = secret_dir = None
    for name, volume in volumes.items():
        if "configMap" in volume:
            config_map = by_kind.get("ConfigMap", {}).get(volume["configMap"]["name"])
            check(config_map is not None, f"volume {name}: no such ConfigMap")
            if config_map and name in mounts:
                config_file = (mounts[name], config_map["data"])
        if "secret" in volume:
            secret = by_kind.get("Secret", {}).get(volume["secret"]["secretName"])
            check(secret is not None, f"volume {name}: no such Secret")
            if secret and name in mounts:
                secret_dir = (mounts[name], secret.get("stringData", {}))

    args = container.get("args", [])
    check("--config" in args, "the container is not given --config")
    if config_file and "--config" in args:
        config_dir, config_name = args[args.index("--config") + 1].rsplit("/", 1)
        directory, files = config_file
        check(
            config_dir == directory and config_name in files,
            f"--config {config_dir}/{config_name} is not a file of the mounted ConfigMap",
        )
        config = parse_toml(files.get(config_name, ""), f"ConfigMap {config_name}")
        token_file = config.get("token_file", "")
        if secret_dir:
            directory, files = secret_dir
            token_dir, token_name = token_file.rsplit("/", 1)
            check(
                token_dir == directory and token_name in files,
                f"token_file {token_file} is not a file of the mounted Secret",
            )
            check_tokens(parse_toml(files.get(token_name, ""), f"Secret {token_name}"), "Secret")

    images = {image["name"] for image in kustomization.get("images", [])}
    check(container["image"] in images, "kustomization.yaml does not set the image")

    return report()


def report() -> int:
    """Prints the problems found; the exit code."""
    for problem in problems:
        print(f"deploy/: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
