#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts or stops the loopback redis-server that tests share: redis-fixture.sh start|stop DIR PORT.
# It runs only on 127.0.0.1, without persistence, and is stopped by the PID it wrote.
set -euo pipefail
cmd=$1 dir=$2 port=$3
mkdir -p "$dir"
case "$cmd" in
start)
  if [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
    kill "$(cat "$dir/redis.pid")" || true
    sleep 0.2
  fi
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
  for _ in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && exit 0
    sleep 0.05
  done
  echo "redis-fixture: redis-server did not answer on 127.0.0.1:$port" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -f "$dir/redis.pid"
  fi
  ;;
*) echo "usage: $0 start|stop DIR PORT" >&2; exit 2 ;;
esac
