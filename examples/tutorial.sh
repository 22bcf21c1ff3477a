#!/usr/bin/env bash
# The InfraKit tutorial (../shared/seed/infrakit-tutorial.txt), command for command, on the
# local store.  `make tutorial` runs it; INFRAKIT_HOME defaults to a fresh temp directory.
set -euo pipefail
cd "$(dirname "$0")"
export INFRAKIT_HOME="${INFRAKIT_HOME:-$(mktemp -d /tmp/infrakit-tutorial.XXXXXX)}"
run() { printf '\n$ %s\n' "$*"; "$@"; }

echo "INFRAKIT_HOME=$INFRAKIT_HOME (instances in $INFRAKIT_HOME/instances)"
run infrakit-local plugin ls
run infrakit-local instance-file describe
run infrakit-local commit cattle.json
run infrakit-local ls
run infrakit-local describe cattle
run infrakit-local instance-file describe
run infrakit-local free cattle
run infrakit-local commit cattle.json
run diff cattle.json cattle2.json || true
run infrakit-local commit cattle2.json --pretend
run infrakit-local commit cattle2.json
run infrakit-local describe cattle

echo; echo "# self-healing: 'infrakit-local run' watches; we delete two instance files"
infrakit-local run --resync 60 2>"$INFRAKIT_HOME/run.log" &
runner=$!
trap 'kill -INT $runner 2>/dev/null || true' EXIT
until grep -q ready "$INFRAKIT_HOME/run.log" 2>/dev/null; do sleep 0.05; done
infrakit-local describe cattle > "$INFRAKIT_HOME/before"
victims=$(ls "$INFRAKIT_HOME/instances" | head -2)
run rm $(for v in $victims; do echo "$INFRAKIT_HOME/instances/$v"; done)
for _ in $(seq 100); do [ "$(ls "$INFRAKIT_HOME/instances" | wc -l)" -ge 10 ] && break; sleep 0.05; done
infrakit-local describe cattle > "$INFRAKIT_HOME/after"
run diff "$INFRAKIT_HOME/before" "$INFRAKIT_HOME/after" || true
kill -INT $runner; wait $runner || true; trap - EXIT
run infrakit-local describe cattle
run infrakit-local destroy cattle
run infrakit-local instance-file describe
