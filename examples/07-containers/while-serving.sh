#!/usr/bin/env bash
# Run a command while counting, every few milliseconds, the servers that answer; then say the fewest seen.
set -u
log=$(mktemp)
( while :; do
    n=0
    for port in 18081 18082 18083 18084 18085 18086; do
      curl -s --max-time 1 -o /dev/null "http://127.0.0.1:$port/" && n=$((n + 1))
    done
    echo "$n" >>"$log"
  done ) &
poller=$!
"$@"
status=$?
kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null
echo "fewest servers answering meanwhile: $(sort -n "$log" | head -1)"
rm -f "$log"
exit "$status"
