#!/usr/bin/env bash
# make demo: the sandbox with the demo seed, zammad-setup, a first and a second sync, then the Dagster UI.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
STATE=demo-state
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
PORT="${DEMO_PORT:-3000}"

mkdir -p "$STATE" "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
rm -f "$STATE/sandbox.json"

echo "==> starting the sandbox (Entra token endpoint, Microsoft Graph, Zammad) on 127.0.0.1"
setsid "$BIN/entrasync" sandbox serve --seed demo --state-dir "$STATE" > "$STATE/sandbox.log" 2>&1 &
SANDBOX_PID=$!
cleanup() { kill -TERM -- "-$SANDBOX_PID" 2>/dev/null || true; [ -n "${DAGSTER_PID:-}" ] && kill -TERM -- "-$DAGSTER_PID" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for _ in $(seq 1 100); do [ -f "$STATE/sandbox.json" ] && break; sleep 0.1; done
[ -f "$STATE/sandbox.json" ] || { cat "$STATE/sandbox.log"; exit 1; }

"$BIN/python" scripts/demo_config.py "$STATE/sandbox.json" "$STATE/config.yaml"
set -a; . "$STATE/sandbox.env"; set +a
export ENTRASYNC_CONFIG="$PWD/$STATE/config.yaml"

echo "==> entrasync zammad-setup (custom attributes entra_key, entra_object_type, entrasync_profile)"
"$BIN/entrasync" zammad-setup
echo "==> first sync (both profiles)"
"$BIN/entrasync" sync || true
echo "==> second sync: nothing left to write"
"$BIN/entrasync" sync --json 2>/dev/null | "$BIN/python" -c 'import json,sys
for r in json.load(sys.stdin):
    print("  %(profile)s: created=%(created)s updated=%(updated)s deactivated=%(deactivated)s unchanged=%(unchanged)s" % r)'

cat <<TXT

Where to look:
  config          $ENTRASYNC_CONFIG
  sandbox         $STATE/sandbox.json (URLs, credentials, control key), $STATE/sandbox.env
  audit trail     $BIN/entrasync audit            (add --format csv to export)
  plan (dry run)  $BIN/entrasync plan
  Dagster UI      http://127.0.0.1:$PORT  (assets, lineage, runs; schedule + delta sensor under Automation)
Stop with Ctrl-C.
TXT
if [ -n "${DEMO_NO_UI:-}" ]; then exit 0; fi
setsid "$BIN/dagster" dev -w workspace.yaml -h 127.0.0.1 -p "$PORT" &
DAGSTER_PID=$!
wait "$DAGSTER_PID"
