#!/usr/bin/env bash
# PgBouncer in transaction pooling mode in front of a PostgreSQL server, for CI and for
# trying stockctl behind a pooler by hand (Debian's `pgbouncer` package).
#   test/pooler/pgbouncer.sh start DIR [PORT] [SERVER_HOST] [SERVER_PORT]   prints host:port
#   test/pooler/pgbouncer.sh stop DIR
# Server connections idle for a second are closed, so that the test harness, which checks
# that nothing is left connected to a test database, sees the pooler's connections go.
set -euo pipefail
cmd="${1:?start|stop}"
dir="${2:?a directory for the pooler files}"
case "$cmd" in
start)
  port="${3:-6432}"
  server_host="${4:-127.0.0.1}"
  server_port="${5:-5432}"
  mkdir -p "$dir"
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=$server_host port=$server_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 40
server_idle_timeout = 1
server_lifetime = 60
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  echo '"postgres" ""' > "$dir/userlist.txt"
  # PgBouncer refuses to run as root.
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$dir" 2>/dev/null || chown -R nobody "$dir"
    runas="$(stat -c %U "$dir")"
    su "$runas" -s /bin/sh -c "pgbouncer -d '$dir/pgbouncer.ini'"
  else
    pgbouncer -d "$dir/pgbouncer.ini"
  fi
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { echo "127.0.0.1:$port"; exit 0; }
    sleep 0.1
  done
  echo "pgbouncer did not start; see $dir/pgbouncer.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/pgbouncer.pid" ]; then
    kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
  fi
  ;;
*)
  echo "usage: $0 start|stop DIR ..." >&2
  exit 2
  ;;
esac
