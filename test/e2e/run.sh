#!/usr/bin/env bash
# `npm run test:e2e`: the extension in a real VS Code (code-server 4.100.3 = VS Code 1.100.3, offline),
# driven by Debian's chromium with playwright-core:
#   1. vsce-packages the extension and installs the .vsix into code-server (it must install cleanly);
#   2. drive.mjs: the user journey (model, hints, quick fix, mask preview, a run, live metrics);
#   3. runSuite.mjs: the @vscode/test-electron-style mocha suite inside code-server's extension host.
# Everything a run writes (code-server state, the Pixelfly home with its daemon and runs, a copy of the
# example workspace) lives in a fresh $RUN; screenshots and logs go to test-artifacts/e2e/.
# Exit status 0 only when every step passed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${PIXELFLY_E2E_CACHE:-$HOME/.cache/pixelfly-e2e}"
PORT="${PORT:-18190}"
BASE="http://127.0.0.1:$PORT"
RUN="/tmp/pfe2e-$PORT"                      # short: unix sockets under $TMPDIR must stay < 108 chars
ART="$ROOT/test-artifacts/e2e"
CS="$CACHE/cs/node_modules/.bin/code-server"
now() { date +%s.%N; }
el() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)

bash "$ROOT/test/e2e/setup.sh" || { echo "[e2e] FAILED: code-server set-up"; exit 1; }
# The extension, its pages, the language server, the CLI/daemon, the native engine and the compiled
# suite: the project's own set-up (cheap when up to date).
node "$ROOT/scripts/setup.mjs" --no-apt > "$RUN.setup.log" 2>&1 || { tail -30 "$RUN.setup.log"; echo "[e2e] FAILED: project set-up"; exit 1; }

rm -rf "$RUN" "$ART"; mkdir -p "$RUN/user-data/User" "$RUN/extensions" "$RUN/tmp" "$RUN/home" "$ART"
cp -r "$ROOT/test/e2e/workspace" "$RUN/ws"
export XDG_CONFIG_HOME="$RUN/xdg/config" XDG_DATA_HOME="$RUN/xdg/data" XDG_CACHE_HOME="$RUN/xdg/cache"
export XDG_RUNTIME_DIR="$RUN/tmp" TMPDIR="$RUN/tmp"
export PIXELFLY_HOME="$RUN/home"           # reaches the extension host, hence the daemon it starts
cat > "$RUN/user-data/User/settings.json" <<'JSON'
{
  "workbench.startupEditor": "none",
  "security.workspace.trust.enabled": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.ignoreRecommendations": true,
  "workbench.enableExperiments": false,
  "workbench.tips.enabled": false,
  "editor.inlayHints.enabled": "on"
}
JSON

rc=0
t=$(now)
if (cd "$ROOT" && npm run -s package > "$ART/package.log" 2>&1) &&
   "$CS" --user-data-dir "$RUN/user-data" --extensions-dir "$RUN/extensions" --install-extension "$ROOT/pixelfly.vsix" > "$ART/install.log" 2>&1 &&
   "$CS" --user-data-dir "$RUN/user-data" --extensions-dir "$RUN/extensions" --list-extensions --show-versions 2>/dev/null | grep -q '^pixelfly.pixelfly@'; then
  echo "[e2e] PASS .vsix packaged ($(du -h "$ROOT/pixelfly.vsix" | cut -f1)) and installed into VS Code $("$CS" --version 2>/dev/null | tail -1 | awk '{print $NF}') in $(el "$t")s"
else
  echo "[e2e] FAIL packaging or installing the .vsix (see $ART/package.log, $ART/install.log)"; tail -5 "$ART/package.log" "$ART/install.log"; rc=1
fi
# The UI run loads the extension from the repository (extensionDevelopmentPath), not the installed copy.
"$CS" --user-data-dir "$RUN/user-data" --extensions-dir "$RUN/extensions" --uninstall-extension pixelfly.pixelfly > /dev/null 2>&1

# setsid: code-server gets its own process group so cleanup stops the whole tree.
setsid "$CS" --bind-addr "127.0.0.1:$PORT" --auth none --disable-telemetry --disable-update-check \
  --disable-workspace-trust --user-data-dir "$RUN/user-data" --extensions-dir "$RUN/extensions" > "$ART/code-server.log" 2>&1 &
CS_PID=$!
cleanup() {
  kill -TERM -- "-$CS_PID" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 -- "-$CS_PID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$CS_PID" 2>/dev/null; wait "$CS_PID" 2>/dev/null
  # The daemon is detached from code-server (it outlives editor windows): stop it explicitly, and
  # only after the extension hosts are gone (they would autostart a new one when it goes away).
  node "$ROOT/dist/pixelfly.js" daemon stop > /dev/null 2>&1
  cp "$RUN/home/daemon.log" "$ART/daemon.log" 2>/dev/null
}
trap cleanup EXIT
for _ in $(seq 1 300); do curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null && break; sleep 0.1; done

t=$(now); node "$ROOT/test/e2e/drive.mjs" "$BASE" "$RUN/ws" "$ROOT" "$ART/ui" || rc=1
echo "[e2e] UI journey: $(el "$t")s"
t=$(now); node "$ROOT/test/e2e/runSuite.mjs" "$BASE" "$ROOT" "$ROOT/out/test/e2e/suite/index.js" "$RUN/ws" "$ART/suite" || rc=1
echo "[e2e] extension-host suite: $(el "$t")s"

cleanup; trap - EXIT
if node "$ROOT/dist/pixelfly.js" daemon status > /dev/null 2>&1; then
  echo "[e2e] FAIL: a Pixelfly daemon is still running in $PIXELFLY_HOME after the editor closed"; rc=1
fi
echo "[e2e] total $(el "$T0")s; screenshots and logs in $ART"
[ $rc = 0 ] && echo "[e2e] ALL PASSED" || echo "[e2e] FAILED"
exit $rc
