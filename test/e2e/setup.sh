#!/usr/bin/env bash
# Idempotent, offline install of a real VS Code for `npm run test:e2e`: code-server 4.100.3 from npm
# (VS Code 1.100.3: the last release whose engines allow node 20), driven by Debian's chromium.
# Installed OUTSIDE the repository (~1.3 GB incl. native builds, ~65 s cold) in $PIXELFLY_E2E_CACHE
# (default ~/.cache/pixelfly-e2e), so repeated runs and fresh clones on the same machine reuse it.
# Adapted from ../shared/vscode-e2e/setup.sh, whose RECIPE.md explains each work-around below.
set -euo pipefail

CACHE="${PIXELFLY_E2E_CACHE:-$HOME/.cache/pixelfly-e2e}"
CS_VERSION="4.100.3"
RG_PKG_VERSION="1.15.11"                      # @vscode/ripgrep pinned by code-server 4.100.3
RG_ASSET="ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
log() { printf '[e2e-setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
mkdir -p "$CACHE"
# code-server writes config.yaml and logs under XDG dirs even for --version: keep them in the cache.
export XDG_CONFIG_HOME="$CACHE/xdg/config" XDG_DATA_HOME="$CACHE/xdg/data" XDG_CACHE_HOME="$CACHE/xdg/cache"

# 1. Debian packages: build deps of VS Code's native node modules, ripgrep (seeded below), chromium.
need=()
for p in build-essential python3 pkg-config libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev ripgrep chromium; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages and not root: sudo apt-get install -y ${need[*]}"; exit 3
  fi
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

CS_BIN="$CACHE/cs/node_modules/.bin/code-server"
if "$CS_BIN" --version >/dev/null 2>&1; then
  log "code-server $CS_VERSION already installed in $CACHE/cs"; exit 0
fi

# 2. @vscode/ripgrep's postinstall downloads from GitHub unless its cache holds the asset:
#    seed the cache with Debian's rg (same major version).
export TMPDIR="$CACHE/tmp"; mkdir -p "$TMPDIR"
RG_CACHE="$TMPDIR/vscode-ripgrep-cache-$RG_PKG_VERSION"
if [ ! -s "$RG_CACHE/$RG_ASSET" ]; then
  mkdir -p "$RG_CACHE"; tmp="$(mktemp -d)"; cp "$(command -v rg)" "$tmp/rg"
  tar -C "$tmp" -czf "$RG_CACHE/$RG_ASSET" rg; rm -rf "$tmp"
fi

# 3. code-server: node-gyp must use Debian's node headers (nodedir), node-pty's postinstall runs npx
#    (yes=true), and code-server's postinstall refuses root without --unsafe-perm.
export npm_config_nodedir=/usr npm_config_yes=true
mkdir -p "$CACHE/cs"
[ -f "$CACHE/cs/package.json" ] || echo '{"name":"pixelfly-e2e-code-server","private":true}' > "$CACHE/cs/package.json"
log "npm install code-server@$CS_VERSION into $CACHE/cs (native builds, ~1 min)"
t0=$(date +%s)
(cd "$CACHE/cs" && npm install --no-audit --no-fund --unsafe-perm --foreground-scripts "code-server@$CS_VERSION" \
   > "$CACHE/cs-install.log" 2>&1) || { tail -40 "$CACHE/cs-install.log"; exit 1; }
log "code-server $("$CS_BIN" --version 2>/dev/null | tail -1) installed in $(( $(date +%s) - t0 )) s"
