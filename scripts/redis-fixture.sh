#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts or stops the loopback redis-server that tests share: redis-fixture.sh start|stop DIR PORT.
# It runs only on 127.0.0.1, without persistence, and is stopped by the PID it wrote.
set -euo pipefail
cmd=$1 dir=$2 port=$3
mkdir -p "$dir"

# Stops the server of the pid file and waits (bounded) until it has exited and freed the port.
stop_pid() {
  local pid
  pid=$(cat "$dir/redis.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  rm -f "$dir/redis.pid"
}
case "$cmd" in
start)
  stop_pid
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
  stop_pid
  ;;
*) echo "usage: $0 start|stop DIR PORT" >&2; exit 2 ;;
esac
