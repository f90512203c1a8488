#!/usr/bin/env bash
# Start the local PostgreSQL and Redis servers the tests use, when they are installed but not running.
set -u
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    echo "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/aerodrome.log || true
  fi
fi
for _ in $(seq 1 20); do
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break
  sleep 0.5
done
exit 0
