#!/usr/bin/env bash
# The InfraKit tutorial (../shared/seed/infrakit-tutorial.txt), command for command, with the
# plugin daemons: infrakit-group-default, infrakit-instance-file --dir ./tutorial and
# infrakit-flavor-vanilla listen on unix sockets in $INFRAKIT_HOME/plugins, and every
# `build/infrakit` of the tutorial is `infrakit-local`.  The group daemon reconciles
# continuously: it heals the instances deleted at the end by itself.
# INFRAKIT_HOME defaults to a fresh temp directory; the daemons are stopped on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export INFRAKIT_HOME="${INFRAKIT_HOME:-$(mktemp -d /tmp/infrakit-daemons.XXXXXX)}"
work="$INFRAKIT_HOME/work"
mkdir -p "$work" && cd "$work"
cp "$here/cattle.json" "$here/cattle2.json" .
run() { printf '\n$ %s\n' "$*"; "$@"; }
# Show a command whose output goes to a file, as the tutorial does.
run_to() { local out="$1"; shift; printf '\n$ %s > %s\n' "$*" "$out"; "$@" >"$out"; }

daemons=()
stop() { for pid in "${daemons[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait || true; }
trap stop EXIT
# Start a daemon in the background; show its "Listening at:" line once it is there.
start() {
  local log="$INFRAKIT_HOME/$1.log"; shift
  printf '\n$ %s\n' "$*"
  "$@" 2>"$log" &
  daemons+=($!)
  for _ in $(seq 600); do
    grep -m1 'Listening at:' "$log" && return 0
    kill -0 "${daemons[-1]}" 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.05
  done
  echo "no 'Listening at:' from $1" >&2; return 1
}

echo "INFRAKIT_HOME=$INFRAKIT_HOME (working in $work)"
start group infrakit-group-default
run mkdir -p tutorial
start instance-file infrakit-instance-file --dir ./tutorial
start flavor-vanilla infrakit-flavor-vanilla
run infrakit-local plugin ls
run infrakit-local instance-file describe
run infrakit-local instance-file describe
run infrakit-local group commit ./cattle.json
run infrakit-local group ls
run infrakit-local group describe cattle
run infrakit-local instance-file describe
run infrakit-local group free cattle
run infrakit-local group commit cattle.json
run diff cattle.json cattle2.json || true
run infrakit-local group commit cattle2.json --pretend
run infrakit-local group commit cattle2.json
run infrakit-local group describe cattle

echo; echo "# self-healing by the group daemon: delete two instance files"
run_to before infrakit-local group describe cattle
victims=$(ls tutorial | head -2)
run rm $(for v in $victims; do echo "./tutorial/$v"; done)
# "After a few moments": until the group daemon has replaced both (bounded).
for _ in $(seq 200); do
  [ "$(ls tutorial | wc -l)" -ge 10 ] && ! ls tutorial | grep -qxF "$(echo "$victims" | head -1)" && break
  sleep 0.05
done
run_to after infrakit-local group describe cattle
run diff before after || true
run infrakit-local group describe cattle
run infrakit-local group destroy cattle
run infrakit-local instance-file describe
