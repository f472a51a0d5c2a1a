#!/usr/bin/env bash
# make demo: the sandbox with the demo seed, zammad-setup, a first and a second sync, then the Dagster UI.
#
# Every long-lived process runs in a session of its own (setsid), so Ctrl-C reaches only this script;
# its trap then stops each session with TERM, waits at most DEMO_STOP_TIMEOUT seconds and KILLs the
# rest. (`dagster dev` started from a script ignores SIGINT: without this it outlives the demo.)
#
# Environment: DEMO_PORT (UI port, 3000), DEMO_NO_UI (stop after the syncs), DEMO_STATE (state dir,
# demo-state), DAGSTER_HOME (.dagster_home), DEMO_STOP_TIMEOUT (seconds, 10); relative paths are
# taken from the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
STATE=$(realpath -m "${DEMO_STATE:-demo-state}")
export DAGSTER_HOME
DAGSTER_HOME=$(realpath -m "${DAGSTER_HOME:-.dagster_home}")
PORT=${DEMO_PORT:-3000}
STOP_TIMEOUT=${DEMO_STOP_TIMEOUT:-10}
CONFIG=$STATE/config.yaml
SESSIONS=()  # ids of the sessions this script started (each leader's pid)
CLEANED=

# Start "$@" in a new session in the background; its pid is the session id.
# (setsid does not fork here: a background child of a non-interactive shell is no group leader.)
# bash starts background commands with SIGINT ignored, and Dagster maps SIGTERM to SIGINT's
# handler, so without env --default-signal `dagster dev` and its children would ignore TERM too.
spawn() {
    setsid env --default-signal=INT,QUIT,TERM "$@" &
    SESSIONS+=("$!")
}

# Run "$@" in a session of its own and wait for it; a signal interrupts the wait at once.
run() {
    spawn "$@"
    wait "$!"
}

# Our sessions: the recorded ones plus any child not recorded yet (a signal between `&` and `+=`).
sessions() {
    printf '%s\n' "${SESSIONS[@]}"
    pgrep -P $$ || true
}

# True while a session still has a live (non-zombie) process.
any_alive() {
    local sid
    for sid in $(sessions | sort -u); do
        ps -o stat= -s "$sid" 2>/dev/null | grep -qv '^Z' && return 0
    done
    return 1
}

# Stop everything we started; runs once, ignores further signals (so do the pkill/ps/sleep it
# runs: they inherit SIG_IGN) and takes at most STOP_TIMEOUT + ~1 s.
cleanup() {
    [ -n "$CLEANED" ] && return 0
    CLEANED=1
    trap '' INT TERM HUP
    local sid deadline=$((SECONDS + STOP_TIMEOUT))
    [ "${#SESSIONS[@]}" -eq 0 ] || echo "==> stopping what the demo started (at most ${STOP_TIMEOUT}s)" >&2
    for sid in $(sessions | sort -u); do pkill -TERM -s "$sid" 2>/dev/null || true; done
    while any_alive && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    for sid in $(sessions | sort -u); do pkill -KILL -s "$sid" 2>/dev/null || true; done
    for sid in "${SESSIONS[@]}"; do wait "$sid" 2>/dev/null || true; done
    rm -f "$STATE/sandbox.json"
}
trap 'trap "" INT TERM HUP; cleanup; exit 130' INT
trap 'trap "" INT TERM HUP; cleanup; exit 143' TERM
trap 'trap "" INT TERM HUP; cleanup; exit 129' HUP  # the terminal was closed
trap cleanup EXIT

mkdir -p "$STATE" "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
rm -f "$STATE/sandbox.json"

echo "==> starting the sandbox (Entra token endpoint, Microsoft Graph, Zammad) on 127.0.0.1"
spawn "$BIN/entrasync" sandbox serve --seed demo --state-dir "$STATE" > "$STATE/sandbox.log" 2>&1
for _ in $(seq 1 300); do
    [ -f "$STATE/sandbox.json" ] || ! kill -0 "${SESSIONS[0]}" 2>/dev/null && break
    sleep 0.1
done
[ -f "$STATE/sandbox.json" ] || { cat "$STATE/sandbox.log"; exit 1; }

"$BIN/python" scripts/demo_config.py "$STATE/sandbox.json" "$CONFIG" "http://127.0.0.1:$PORT"
# demo.env: what a fresh shell needs for the entrasync commands below (secrets quoted, never sourced raw).
(
    umask 077
    {
        while IFS= read -r line; do
            key=${line%%=*}
            [[ $key =~ ^[A-Z_][A-Z0-9_]*$ ]] && printf 'export %s=%q\n' "$key" "${line#*=}"
        done < "$STATE/sandbox.env"
        printf 'export ENTRASYNC_CONFIG=%q\nexport DAGSTER_HOME=%q\n' "$CONFIG" "$DAGSTER_HOME"
    } > "$STATE/demo.env.tmp"
    mv "$STATE/demo.env.tmp" "$STATE/demo.env"
)
# shellcheck source=/dev/null
. "$STATE/demo.env"

echo "==> entrasync zammad-setup (custom attributes entra_key, entra_object_type, entrasync_profile)"
run "$BIN/entrasync" zammad-setup --config "$CONFIG"
echo "==> first sync (both profiles)"
run "$BIN/entrasync" sync --config "$CONFIG" || true
echo "==> second sync: nothing left to write"
run "$BIN/entrasync" sync --config "$CONFIG" --json > "$STATE/second-sync.json" 2> "$STATE/second-sync.log" || true
"$BIN/python" -c 'import json, sys
rows = json.load(open(sys.argv[1]))
for r in rows if isinstance(rows, list) else [rows]:
    print("  %(profile)s: created=%(created)s updated=%(updated)s deactivated=%(deactivated)s unchanged=%(unchanged)s" % r)
' "$STATE/second-sync.json" || cat "$STATE/second-sync.log"

WITH_ENV=". $(printf %q "$STATE/demo.env") && $(printf %q "$BIN/entrasync")"
cat <<TXT

Where to look while the demo runs (the commands work as is in a fresh shell; demo.env holds the secrets):
  audit trail     $WITH_ENV audit
  audit as CSV    $WITH_ENV audit --format csv
  plan (dry run)  $WITH_ENV plan
  health          $WITH_ENV status
  config          $CONFIG
  sandbox         $STATE/sandbox.json (URLs, credentials, control key)
TXT
if [ -n "${DEMO_NO_UI:-}" ]; then exit 0; fi
cat <<TXT
  Dagster UI      http://127.0.0.1:$PORT  (assets, lineage, runs; schedule + delta sensor under Automation)
Stop with Ctrl-C.

TXT
spawn "$BIN/dagster" dev -w workspace.yaml -h 127.0.0.1 -p "$PORT"
wait "$!"
