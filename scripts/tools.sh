#!/usr/bin/env bash
# Installs the pinned real components Spillway's lab and tests use:
#   - Nomad, built from the Go module proxy and cached outside the clone;
#   - Prometheus, Alertmanager, PostgreSQL and Chromium, from Debian's packages
#     (as root). PostgreSQL is for the journal's contract tests, which start a
#     private cluster; no system cluster is created or started. Chromium is for
#     the console's browser test (never a browser a test tool downloads).
# It also checks Node.js, which only `make webui` needs (the console's build):
# too old or missing is said, not fatal, since Go builds need no Node.
# Idempotent: a second run with a warm cache takes seconds.
set -euo pipefail

# Nomad v1.6.3 is the last release under the MPL-2.0; from v1.7.0 on, Nomad's
# source is under the Business Source License. The lab and the tests run only
# open-source Nomad. (Spillway itself links only github.com/hashicorp/nomad/api,
# which stays MPL-2.0, and supports Nomad servers 1.6 and later.)
NOMAD_VERSION="1.6.3"
# The api module at the same commit as v1.6.3 (e0497bff1437): the module zip
# omits the nested api module, so it is copied into ./api before building.
NOMAD_API_VERSION="v0.0.0-20231030125810-e0497bff1437"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/spillway/tools"
NOMAD_DIR="$CACHE_ROOT/nomad-$NOMAD_VERSION"
NOMAD_BIN="$NOMAD_DIR/nomad"

log() { printf '==> %s\n' "$*"; }

install_nomad() {
  if [[ -x "$NOMAD_BIN" ]] && "$NOMAD_BIN" version 2>/dev/null | grep -q "Nomad v$NOMAD_VERSION"; then
    log "nomad v$NOMAD_VERSION: cached at $NOMAD_BIN"
    return
  fi
  log "nomad v$NOMAD_VERSION: building from the Go module proxy (a few minutes the first time)"
  local src api work
  src="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/nomad@v$NOMAD_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  api="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/nomad/api@$NOMAD_API_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$src" || -z "$api" ]]; then
    echo "tools: could not download github.com/hashicorp/nomad@v$NOMAD_VERSION from the Go module proxy" >&2
    exit 1
  fi
  work="$(mktemp -d "${TMPDIR:-/tmp}/spillway-nomad-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  cp -r "$src" "$work/nomad"
  chmod -R u+w "$work/nomad"
  rm -rf "$work/nomad/api"
  cp -r "$api" "$work/nomad/api"
  chmod -R u+w "$work/nomad/api"
  mkdir -p "$NOMAD_DIR"
  # Progress: go build is silent for minutes, so print a heartbeat.
  ( while sleep 30; do log "nomad: still building ($(date +%T))"; done ) &
  local beat=$!
  if ! (cd "$work/nomad" && GOFLAGS=-mod=mod go build -trimpath -o "$NOMAD_BIN.tmp" .); then
    kill "$beat" 2>/dev/null || true
    echo "tools: building nomad failed" >&2
    exit 1
  fi
  kill "$beat" 2>/dev/null || true
  mv "$NOMAD_BIN.tmp" "$NOMAD_BIN"
  log "nomad v$NOMAD_VERSION: built at $NOMAD_BIN"
}

install_debian() {
  local missing=()
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
  [[ -x /usr/lib/chromium/chromium ]] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "prometheus, alertmanager, postgresql, chromium: installed"
    return
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "tools: missing ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}'" >&2
    return
  fi
  log "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps node-exporter and friends out; policy-rc.d stops
  # the packages from starting system daemons we do not want.
  local rc=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $rc ]]; then printf '#!/bin/sh\nexit 101\n' >"$rc"; chmod +x "$rc"; created=1; fi
  # postgresql-common would create (not start) a "main" cluster; the tests
  # make their own, so skip it.
  mkdir -p /etc/postgresql-common/createcluster.d
  [[ -e /etc/postgresql-common/createcluster.d/spillway.conf ]] || echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/spillway.conf
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ $created == 1 ]]; then rm -f "$rc"; fi
  log "installed ${missing[*]}"
}

# The static analyser is a tool dependency pinned in go.mod (honnef.co/go/tools
# v0.8.2, from the module proxy): building it once here keeps `make lint` fast.
install_staticcheck() {
  local v
  v=$(go tool staticcheck -version)
  log "staticcheck: $v (pinned in go.mod)"
}

# Vite 8, which builds the console, needs Node.js ^20.19 or >= 22.12.
# Prints what to install and returns 1 when node is missing or older.
NODE_WANTED="^20.19 or >= 22.12"
check_node() {
  local v major minor
  if ! v=$(node --version 2>/dev/null); then
    echo "tools: node is not installed; the console's build (make webui) needs Node.js $NODE_WANTED and npm." >&2
    echo "tools:   install it from https://nodejs.org or your distribution's NodeSource packages (Debian's own nodejs is 18, too old)." >&2
    echo "tools:   Go builds and tests need no Node: the built console is committed in webui/dist." >&2
    return 1
  fi
  v=${v#v}
  major=${v%%.*}
  minor=${v#*.}; minor=${minor%%.*}
  if (( major < 20 || (major == 20 && minor < 19) || (major == 22 && minor < 12) || major == 21 )); then
    echo "tools: node v$v is too old; the console's build (make webui) needs Node.js $NODE_WANTED (Vite 8)." >&2
    echo "tools:   install a newer one from https://nodejs.org or your distribution's NodeSource packages (Debian's own nodejs is 18)." >&2
    echo "tools:   Go builds and tests need no Node: the built console is committed in webui/dist." >&2
    return 1
  fi
  if ! command -v npm >/dev/null; then
    echo "tools: node v$v has no npm beside it; the console's build (make webui) needs npm (it comes with Node.js from https://nodejs.org)." >&2
    return 1
  fi
  log "node v$v, npm $(npm --version): fine for the console's build"
}

case "${1:-all}" in
  nomad) install_nomad ;;
  debian) install_debian ;;
  staticcheck) install_staticcheck ;;
  node) check_node ;;
  all) install_debian; install_nomad; install_staticcheck; check_node || true ;;
  *) echo "usage: $0 [all|nomad|debian|staticcheck|node]" >&2; exit 2 ;;
esac
