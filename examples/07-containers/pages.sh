#!/usr/bin/env bash
# The pages the group's servers answer on 127.0.0.1:18081-18086, counted by page.
for port in 18081 18082 18083 18084 18085 18086; do
  curl -s --max-time 1 "http://127.0.0.1:$port/" || true
done | sort | uniq -c
