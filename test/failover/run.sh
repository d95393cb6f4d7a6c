#!/usr/bin/env bash
# A primary failover under load, proven.
#
# Builds a pg_auto_failover formation on loopback (a monitor and three PostgreSQL 15 data
# nodes, number_sync_standbys 1), puts stockctl on it, starts two `stockctl serve` on the
# multi-host URL (target_session_attrs=primary), and runs a checkout client against both
# while it performs one planned failover (`pg_autoctl perform failover`) and then crashes
# the new primary (kill -9 of its pg_autoctl processes, then of its postmaster). Then it
# retries every order whose outcome the client did not learn (same Idempotency-Key), and
# checks on the primary that every acknowledged order exists, every unknown one ended as
# exactly one order, `stockctl verify` is clean, nothing answered 500, and both serves
# lived. It prints one JSON document on stdout (progress goes to stderr) and exits 0 only
# if all of that holds.
#
#   test/failover/run.sh
#
# Runs as root (it installs Debian's postgresql-15-auto-failover and pg-auto-failover-cli
# if missing, and runs pg_autoctl as the non-root user $FAILOVER_USER, created if
# missing), or as a normal user when those packages are already installed.
#   FAILOVER_KEEP=1          keep the temp directory (logs, data directories) for debugging
#   FAILOVER_BASE_PORT=6000  monitor on it, data nodes on +1..+3, the serves on +8 and +9
#   FAILOVER_USER            the OS user for pg_autoctl (default stockctl-failover)
#   FAILOVER_WARMUP_S=15     load before the planned failover
#   FAILOVER_SETTLE_S=15     load after each failover, once writes succeed again
#   FAILOVER_WORKERS=4       concurrent checkout workers (each: order, then pay or cancel some)
#   FAILOVER_THINK_MS=40     pause between a worker's orders (0.5x to 1.5x this)
#   FAILOVER_TIMEOUT_MS=10000  a request without an answer by then is "unknown"
#   FAILOVER_RESOLVE_S=60    how long each unknown order is retried
#   FAILOVER_TARGET_SESSION_ATTRS=primary  in the serves' URL; read-write fails here: postgres.js
#                            3.4.9 checks only default_transaction_read_only, so it takes a hot
#                            standby for read-write and keeps answering 25006 from it
set -Eeuo pipefail
trap 'LAST_ERROR="line $LINENO: $BASH_COMMAND"' ERR

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PGBIN=/usr/lib/postgresql/15/bin

BASE_PORT="${FAILOVER_BASE_PORT:-6000}"
KEEP="${FAILOVER_KEEP:-0}"
WARMUP_S="${FAILOVER_WARMUP_S:-15}"
SETTLE_S="${FAILOVER_SETTLE_S:-15}"
MONITOR_PORT="$BASE_PORT"
NODE_PORTS=("$((BASE_PORT + 1))" "$((BASE_PORT + 2))" "$((BASE_PORT + 3))")
SERVE_PORTS=("$((BASE_PORT + 8))" "$((BASE_PORT + 9))")
SKUS="FO-A,FO-B,FO-C,FO-D"
RUN_STARTED_MS="$(date +%s%3N)"

log() { printf '[failover %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
# A failure before there is anything to judge: still one JSON document on stdout.
REPORTED=0
failure_doc() {
  node -e 'console.log(JSON.stringify({ ok: false, failures: [process.argv[1]], stage: "before the verdict" }, null, 2))' "$1" || true
  REPORTED=1
}
die() {
  log "FAILED: $*"
  failure_doc "$*"
  exit 1
}
now_ms() { date +%s%3N; }

WORK=""
CLIENT_PID=""
SERVE_PIDS=()
# Every process this script started and may have to stop: pg_autoctl supervisors by node.
declare -A SUPERVISOR

# ---------------------------------------------------------------- cleanup, on any exit
cleanup() {
  local rc=$?
  trap - EXIT INT TERM ERR
  set +eu
  if [ "$REPORTED" = 0 ]; then
    case "$rc" in
      130 | 143) failure_doc "interrupted (exit $rc) before the verdict" ;;
      *) failure_doc "run.sh stopped (exit $rc) before its verdict${LAST_ERROR:+, at $LAST_ERROR}" ;;
    esac
    [ "$rc" = 0 ] && rc=1
  fi
  log "cleaning up"
  [ -n "$WORK" ] && [ -d "$WORK" ] && touch "$WORK/stop"
  if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then kill -TERM "$CLIENT_PID" 2>/dev/null; fi
  # The serves drain on SIGTERM (up to --grace, 10 s).
  local pid
  for pid in "${SERVE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  wait_gone 15 "${SERVE_PIDS[@]}" || for pid in "${SERVE_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  # pg_autoctl: SIGINT is its fast shutdown (it stops its Postgres).
  local sups=() name
  for name in "${!SUPERVISOR[@]}"; do sups+=("${SUPERVISOR[$name]}"); done
  for pid in "${sups[@]}"; do kill -INT "$pid" 2>/dev/null; done
  if ! wait_gone 30 "${sups[@]}"; then
    for pid in "${sups[@]}"; do
      kill -0 "$pid" 2>/dev/null || continue
      kill -KILL $(children_of "$pid") "$pid" 2>/dev/null
    done
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    local dir pm shm
    for dir in "$WORK"/monitor "$WORK"/node*; do
      [ -f "$dir/postmaster.pid" ] || continue
      pm="$(head -n 1 "$dir/postmaster.pid" 2>/dev/null)"
      if [ -n "$pm" ] && [ "$(readlink "/proc/$pm/cwd" 2>/dev/null)" = "$dir" ]; then
        kill -QUIT "$pm" 2>/dev/null
        wait_gone 10 "$pm" || kill -KILL "$pm" 2>/dev/null
      fi
    done
    # What is left of a crashed postmaster (its backends), or anything else of ours: a
    # process of the pg_autoctl user whose working directory is in $WORK (Postgres
    # processes run in their data directory).
    local strays=() p
    for p in $(pids_of_user "$PG_OS_USER"); do
      case "$(cat "/proc/$p/comm" 2>/dev/null)" in postgres | pg_autoctl) ;; *) continue ;; esac
      case "$(readlink "/proc/$p/cwd" 2>/dev/null)" in "$WORK" | "$WORK"/*) strays+=("$p") ;; esac
    done
    if [ "${#strays[@]}" -gt 0 ]; then
      kill -TERM "${strays[@]}" 2>/dev/null
      wait_gone 5 "${strays[@]}" || kill -KILL "${strays[@]}" 2>/dev/null
    fi
    # A postmaster killed with SIGKILL leaves its System V shared memory segment behind.
    for dir in "$WORK"/monitor "$WORK"/node*; do
      [ -f "$dir/postmaster.pid" ] || continue
      read -r _ shm < <(sed -n 7p "$dir/postmaster.pid" 2>/dev/null) || shm=""
      if [ -n "$shm" ] && ipcs -m -i "$shm" 2>/dev/null | grep -q "nattch=0"; then
        ipcrm -m "$shm" 2>/dev/null && log "removed the shared memory segment $shm of the crashed $(basename "$dir")"
      fi
    done
    if [ "$KEEP" = 1 ]; then
      log "kept $WORK (FAILOVER_KEEP=1)"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Processes, read from /proc (procps, for pgrep and ps, is not on every Debian machine).
proc_field() { # proc_field PID N: field N (3 = state, 4 = parent) of /proc/PID/stat
  local stat fields
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  read -r -a fields <<< "${stat##*) }"
  echo "${fields[$(($2 - 3))]}"
}
children_of() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(proc_field "${p#/proc/}" 4 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
  done
  return 0
}
pids_of_user() {
  local p uid
  uid="$(id -u "$1")"
  for p in /proc/[0-9]*; do
    [ "$(stat -c %u "$p" 2>/dev/null)" = "$uid" ] && echo "${p#/proc/}"
  done
  return 0
}

# Waits until every pid given has gone, for at most $1 seconds; false if some remain.
wait_gone() {
  local seconds=$1 pid alive
  shift
  for _ in $(seq 1 $((seconds * 5))); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.2
  done
  return 1
}

# One JSON line in events.jsonl: event KIND [NODE] [DETAIL].
event() {
  local detail="${4:-}"
  detail="${detail//\\/\\\\}"
  detail="${detail//\"/\\\"}"
  printf '{"t":%s,"event":"%s","kind":"%s","node":"%s","detail":"%s"}\n' "$(now_ms)" "$1" "$2" "${3:-}" "$detail" >> "$WORK/events.jsonl"
}

# ---------------------------------------------------------------- 1. packages and the user
if ! command -v pg_autoctl >/dev/null 2>&1 || [ ! -e /usr/lib/postgresql/15/lib/pgautofailover.so ]; then
  [ "$(id -u)" = 0 ] || die "pg_auto_failover is not installed and this is not root: apt-get install postgresql-15-auto-failover pg-auto-failover-cli"
  log "installing postgresql-15-auto-failover and pg-auto-failover-cli (Debian's packages)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q postgresql-15-auto-failover pg-auto-failover-cli >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q postgresql-15-auto-failover pg-auto-failover-cli >/dev/null
  fi
fi
[ -x "$PGBIN/pg_ctl" ] || die "$PGBIN/pg_ctl is missing (postgresql-15)"

if [ "$(id -u)" = 0 ]; then
  PG_OS_USER="${FAILOVER_USER:-stockctl-failover}"
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating the system user $PG_OS_USER to run pg_autoctl (PostgreSQL refuses root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  AS_PG=(setpriv --reuid "$PG_OS_USER" --regid "$(id -g "$PG_OS_USER")" --init-groups)
else
  PG_OS_USER="$(id -un)"
  AS_PG=()
fi

if [ ! -d "$ROOT/node_modules" ]; then
  log "npm ci (no node_modules)"
  (cd "$ROOT" && npm ci >/dev/null)
fi
[ -f "$ROOT/dist/cli/main.js" ] || { log "npm run build (no dist/)"; (cd "$ROOT" && npm run build >/dev/null); }

for port in "$MONITOR_PORT" "${NODE_PORTS[@]}" "${SERVE_PORTS[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port on 127.0.0.1 is taken; set FAILOVER_BASE_PORT"; fi
done

WORK="$(mktemp -d /tmp/stockctl-failover.XXXXXX)"
chmod 755 "$WORK"
mkdir -p "$WORK/sock" "$WORK/run" "$WORK/config" "$WORK/data"
chown -R "$PG_OS_USER:" "$WORK"
: > "$WORK/events.jsonl"
log "working in $WORK"

PG_ENV=(env -i "PATH=$PGBIN:/usr/bin:/bin" "HOME=$WORK" "XDG_CONFIG_HOME=$WORK/config" "XDG_DATA_HOME=$WORK/data"
  "XDG_RUNTIME_DIR=$WORK/run" "PG_REGRESS_SOCK_DIR=$WORK/sock" "PGHOST=$WORK/sock" "LANG=C.UTF-8")
autoctl() { (cd "$WORK" && "${AS_PG[@]}" "${PG_ENV[@]}" pg_autoctl "$@"); }
# autoctl_bg NAME ARGS...: a pg_autoctl supervisor in the background (its pid is the process's own).
autoctl_bg() {
  local name=$1
  shift
  (cd "$WORK" && exec "${AS_PG[@]}" "${PG_ENV[@]}" pg_autoctl "$@") >> "$WORK/$name.log" 2>&1 &
  SUPERVISOR[$name]=$!
  disown "$!" # not waited for; and no "Killed" line when the crash kills it
}

export PGCONNECT_TIMEOUT=3
mon_sql() { "$PGBIN/psql" -X -q -A -t -h 127.0.0.1 -p "$MONITOR_PORT" -U autoctl_node -d pg_auto_failover -c "$1"; }
node_sql() { "$PGBIN/psql" -X -q -A -t -h 127.0.0.1 -p "$1" -U "$PG_OS_USER" -d stockctl -c "$2"; }
formation() {
  mon_sql "select string_agg(nodename || ':' || reportedstate || '/' || goalstate || ':' || health, ' ' order by nodeid) from pgautofailover.node" 2>/dev/null || true
}
# until SECONDS WHAT COMMAND...: runs COMMAND every 0.25 s until it succeeds.
until_ok() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$(($(now_ms) + seconds * 1000))
  until "$@" >/dev/null 2>&1; do
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

# ---------------------------------------------------------------- 2. the formation
MONITOR_URI="postgres://autoctl_node@127.0.0.1:$MONITOR_PORT/pg_auto_failover?sslmode=disable"
log "creating the monitor on 127.0.0.1:$MONITOR_PORT"
autoctl create monitor --pgdata "$WORK/monitor" --pgport "$MONITOR_PORT" --hostname 127.0.0.1 --listen 127.0.0.1 \
  --auth trust --no-ssl > "$WORK/monitor.log" 2>&1 || { tail -n 20 "$WORK/monitor.log" >&2; die "pg_autoctl create monitor failed"; }
# Health checks every second; a node that has not reported for 3 s and fails its check is
# unhealthy; a primary gets 5 s to drain (more than the nodes' network_partition_timeout).
cat >> "$WORK/monitor/postgresql.conf" <<'EOF'
# test/failover/run.sh: fail over within seconds
listen_addresses = '127.0.0.1'
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500
pgautofailover.node_considered_unhealthy_timeout = 3000
pgautofailover.startup_grace_period = 3000
pgautofailover.primary_demote_timeout = 5000
EOF
autoctl_bg monitor run --pgdata "$WORK/monitor"
until_ok 30 monitor mon_sql "select 1" || die "the monitor did not come up (see $WORK/monitor.log)"

node_settings() {
  # The data nodes' own timeouts (seconds), for a failover within seconds.
  local dir=$1 kv
  for kv in "timeout.network_partition_timeout 3" "timeout.prepare_promotion_catchup 10" \
    "timeout.prepare_promotion_walreceiver 2" "timeout.postgresql_restart_failure_timeout 5" \
    "timeout.postgresql_restart_failure_max_retries 1"; do
    # shellcheck disable=SC2086
    autoctl config set --pgdata "$dir" $kv >/dev/null
  done
}
create_node() {
  local i=$1
  autoctl create postgres --pgdata "$WORK/node$i" --pgport "${NODE_PORTS[$((i - 1))]}" --hostname 127.0.0.1 \
    --listen 127.0.0.1 --auth trust --no-ssl --monitor "$MONITOR_URI" --name "node$i" --dbname stockctl
}
node_state_is() { [ "$(mon_sql "select reportedstate || '/' || goalstate from pgautofailover.node where nodename = '$1'")" = "$2" ]; }

log "creating node1 (the first primary) on 127.0.0.1:${NODE_PORTS[0]}"
create_node 1 > "$WORK/node1.log" 2>&1 || { tail -n 20 "$WORK/node1.log" >&2; die "pg_autoctl create postgres (node1) failed"; }
# pg_autoctl sizes Postgres for the whole machine (shared_buffers a quarter of RAM):
# four servers share two cores here. The standbys copy this file with their base backup.
cat >> "$WORK/node1/postgresql.conf" <<'EOF'
# test/failover/run.sh: four servers on a small machine
shared_buffers = '128MB'
effective_cache_size = '1GB'
maintenance_work_mem = '64MB'
work_mem = '4MB'
max_connections = 100
checkpoint_timeout = '30s'
wal_keep_size = '512MB'
EOF
node_settings "$WORK/node1"
autoctl_bg node1 run --pgdata "$WORK/node1"
until_ok 60 node1 node_state_is node1 single/single || die "node1 did not become single (see $WORK/node1.log)"

for i in 2 3; do
  log "creating node$i (a standby) on 127.0.0.1:${NODE_PORTS[$((i - 1))]}"
  started="$(now_ms)"
  create_node "$i" > "$WORK/node$i.log" 2>&1 &
  creating=$!
  # pg_basebackup waits for a checkpoint on the primary: without one it waits for the
  # next timed one (about 90 s here); a CHECKPOINT makes the join take seconds.
  while kill -0 "$creating" 2>/dev/null; do
    node_sql "${NODE_PORTS[0]}" "checkpoint" >/dev/null 2>&1 || true
    sleep 1
    [ $(($(now_ms) - started)) -lt 180000 ] || { kill -INT "$creating"; break; }
  done
  wait "$creating" || { tail -n 20 "$WORK/node$i.log" >&2; die "pg_autoctl create postgres (node$i) failed"; }
  node_settings "$WORK/node$i"
  autoctl_bg "node$i" run --pgdata "$WORK/node$i"
  until_ok 90 "node$i" node_state_is "node$i" secondary/secondary || die "node$i did not become a secondary: $(formation)"
  log "node$i joined in $(($(now_ms) - started)) ms"
done

# `pg_autoctl set formation number-sync-standbys 1` refuses every value in 2.0; the
# monitor's own function does not.
[ "$(mon_sql "select pgautofailover.set_formation_number_sync_standbys('default', 1)")" = t ] ||
  die "could not set number_sync_standbys to 1"
healthy() {
  [ "$(formation)" = "node1:primary/primary:1 node2:secondary/secondary:1 node3:secondary/secondary:1" ] &&
    node_sql "${NODE_PORTS[0]}" "show synchronous_standby_names" | grep -q '^ANY 1 '
}
until_ok 60 formation healthy || die "the formation did not become healthy: $(formation)"
log "formation healthy (number_sync_standbys 1):"
autoctl show state --pgdata "$WORK/monitor" >&2
event formation_healthy setup node1

# ---------------------------------------------------------------- 3. stockctl on it
# One build for the whole run: a copy of bin/, dist/ and drizzle/ (the migrations), so a
# rebuild of dist/ in the work tree meanwhile (npm test rebuilds it) cannot mix two builds.
APP="$WORK/app"
mkdir -p "$APP"
cp -a "$ROOT/bin" "$ROOT/dist" "$ROOT/drizzle" "$ROOT/package.json" "$APP/"
ln -s "$ROOT/node_modules" "$APP/node_modules"
FO_STOCKCTL_VERSION="$(node "$APP/bin/stockctl" --version)" || die "the copy of stockctl in $APP does not start (was dist/ being rebuilt? run again)"
FO_DIST_BUILT="$(date -u -r "$APP/dist/cli/main.js" +%Y-%m-%dT%H:%M:%SZ)"
FO_GIT_HEAD="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
export FO_STOCKCTL_VERSION FO_DIST_BUILT FO_GIT_HEAD
HOSTS="127.0.0.1:${NODE_PORTS[0]},127.0.0.1:${NODE_PORTS[1]},127.0.0.1:${NODE_PORTS[2]}"
TSA="${FAILOVER_TARGET_SESSION_ATTRS:-primary}"
export FO_TSA="$TSA"
export DATABASE_URL="postgres://$PG_OS_USER@$HOSTS/stockctl?target_session_attrs=$TSA&sslmode=disable"
export STOCKCTL_NO_DOTENV=1 STOCKCTL_ACTOR=failover-test NO_COLOR=1
stockctl() { node "$APP/bin/stockctl" "$@"; }
log "stockctl migrate, products, token on $DATABASE_URL"
stockctl migrate > "$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "stockctl migrate failed"; }
for sku in ${SKUS//,/ }; do
  stockctl product add "$sku" --name "Failover $sku" --stock 100000 >> "$WORK/setup.log" 2>&1 || die "stockctl product add $sku failed"
done
TOKEN_JSON="$(stockctl token create checkout --role shop --json)" || die "stockctl token create failed"
TOKEN="$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).token)' "$TOKEN_JSON")"

# ---------------------------------------------------------------- 4. two serves
URLS=""
for n in 1 2; do
  port="${SERVE_PORTS[$((n - 1))]}"
  node "$APP/bin/stockctl" serve --port "$port" --pool 8 > "$WORK/serve$n.stdout.log" 2> "$WORK/serve$n.stderr.log" &
  SERVE_PIDS+=("$!")
  URLS="${URLS:+$URLS,}http://127.0.0.1:$port"
done
export FO_STATE="$WORK" FO_URLS="$URLS" FO_TOKEN="$TOKEN" FO_SKUS="$SKUS"
export FO_WORKERS="${FAILOVER_WORKERS:-4}" FO_THINK_MS="${FAILOVER_THINK_MS:-40}"
export FO_TIMEOUT_MS="${FAILOVER_TIMEOUT_MS:-10000}" FO_RESOLVE_S="${FAILOVER_RESOLVE_S:-60}"
client() { node "$HERE/client.mjs" "$@"; }
FO_READY_TIMEOUT_S=30 client wait-ready > /dev/null || die "the serves did not answer GET /readyz 200 (see $WORK/serve*.stderr.log)"
log "serve up on $URLS (pids ${SERVE_PIDS[*]})"

serve_status() {
  local n pid out=() alive code state
  for n in 1 2; do
    pid="${SERVE_PIDS[$((n - 1))]}"
    alive=false code=null
    state="$(proc_field "$pid" 3 || true)"
    if [ -n "$state" ] && [ "$state" != Z ]; then
      alive=true
    else
      wait "$pid" 2>/dev/null && code=0 || code=$?
    fi
    out+=("{\"name\":\"serve$n\",\"port\":${SERVE_PORTS[$((n - 1))]},\"pid\":$pid,\"alive\":$alive,\"exit\":$code}")
  done
  local IFS=,
  echo "[${out[*]}]"
}

# ---------------------------------------------------------------- 5, 6. load and failovers
last_write_ok() { node -e 'try { process.stdout.write(String(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).last_write_ok || 0)) } catch { process.stdout.write("0") }' "$WORK/progress.json"; }
current_primary() { mon_sql "select nodename from pgautofailover.node where reportedstate in ('primary', 'wait_primary') and goalstate in ('primary', 'wait_primary') order by nodeid limit 1"; }
port_of() { mon_sql "select nodeport from pgautofailover.node where nodename = '$1'"; }
# Prints the node other than $1 that the monitor has made primary and that takes writes.
new_primary() {
  local row name port
  row="$(mon_sql "select nodename || ' ' || nodeport from pgautofailover.node where nodename <> '$1' and reportedstate in ('primary', 'wait_primary') and goalstate in ('primary', 'wait_primary') order by nodeid limit 1" 2>/dev/null)"
  read -r name port <<< "$row"
  [ -n "$name" ] || return 1
  [ "$(node_sql "$port" "select pg_is_in_recovery() or current_setting('default_transaction_read_only')::bool" 2>/dev/null)" = f ] || return 1
  echo "$name"
}
# after_failover KIND OLD: waits for the new primary, /readyz and a successful write.
after_failover() {
  local kind=$1 old=$2 started=$3 name="" deadline up
  deadline=$(($(now_ms) + 120000))
  until name="$(new_primary "$old")"; do
    if [ "$(now_ms)" -ge "$deadline" ]; then
      event failure "$kind" "" "no new primary within 120 s of the $kind failover: $(formation)"
      return 1
    fi
    sleep 0.2
  done
  up="$(now_ms)"
  event primary_up "$kind" "$name"
  log "$kind: $name is primary after $((up - started)) ms"
  if FO_READY_TIMEOUT_S=60 FO_READY_LABEL="$kind" client wait-ready > /dev/null; then
    event readyz_ok "$kind" "$name"
  else
    event readyz_failed "$kind" "$name" "GET /readyz did not answer 200 within 60 s of the new primary"
    log "$kind: /readyz did not recover within 60 s"
  fi
  deadline=$(($(now_ms) + 60000))
  until [ "$(last_write_ok)" -gt "$up" ]; do
    if [ "$(now_ms)" -ge "$deadline" ]; then
      event failure "$kind" "$name" "no successful write within 60 s of $name becoming primary ($kind failover)"
      return 1
    fi
    sleep 0.2
  done
  event write_confirmed "$kind" "$name"
  log "$kind: /readyz is 200 and writes succeed again (checked $(($(now_ms) - started)) ms after the failover began)"
  PRIMARY="$name"
}

client load 2> "$WORK/client.log" &
CLIENT_PID=$!
log "load running ($FO_WORKERS workers over both serves); planned failover in ${WARMUP_S} s"
sleep "$WARMUP_S"
kill -0 "$CLIENT_PID" 2>/dev/null || die "the client stopped early (see $WORK/client.log)"

PRIMARY="$(current_primary)"
started="$(now_ms)"
event failover_started planned "$PRIMARY"
log "planned: pg_autoctl perform failover (primary $PRIMARY)"
# In the background: it returns once the failover is over, and the new primary is watched for meanwhile.
autoctl perform failover --pgdata "$WORK/monitor" > "$WORK/perform-failover.log" 2>&1 &
performing=$!
after_failover planned "$PRIMARY" "$started" || true
if ! wait "$performing"; then
  event failure planned "" "pg_autoctl perform failover failed (see perform-failover.log)"
  log "pg_autoctl perform failover exited non-zero (see $WORK/perform-failover.log)"
fi
sleep "$SETTLE_S"

VICTIM="$PRIMARY"
victim_dir="$WORK/$VICTIM"
sup="${SUPERVISOR[$VICTIM]}"
autoctl_pids=("$sup")
for p in $(children_of "$sup"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = pg_autoctl ] && autoctl_pids+=("$p"); done
postmaster="$(head -n 1 "$victim_dir/postmaster.pid")"
started="$(now_ms)"
event failover_started crash "$VICTIM" "kill -9 pg_autoctl ${autoctl_pids[*]}, then postmaster $postmaster"
log "crash: kill -9 of $VICTIM's pg_autoctl (${autoctl_pids[*]}) and then of its postmaster ($postmaster)"
kill -KILL "${autoctl_pids[@]}"
kill -KILL "$postmaster"
unset "SUPERVISOR[$VICTIM]"
after_failover crash "$VICTIM" "$started" || true
sleep "$SETTLE_S"

touch "$WORK/stop"
wait "$CLIENT_PID" || log "the client exited $?"
CLIENT_PID=""
log "load stopped; formation now:"
autoctl show state --pgdata "$WORK/monitor" >&2 || true

# ---------------------------------------------------------------- 7. resolve and check
client resolve 2>> "$WORK/client.log" || log "resolve exited $?"
set +e
verify_out="$(stockctl verify --json 2>&1)"
verify_code=$?
set -e
node -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify({ exit_code: Number(process.argv[2]), output: (() => { try { return JSON.parse(process.argv[3]) } catch { return process.argv[3] } })() }))' \
  "$WORK/verify.json" "$verify_code" "$verify_out"
serve_status > "$WORK/serves.json"
# The monitor's own record of every state change, with its time (for the failovers' timings).
mon_sql "select coalesce(json_agg(e order by eventid), '[]') from (select eventid, round(extract(epoch from eventtime) * 1000) as t, nodename, reportedstate, goalstate, description from pgautofailover.event) e" \
  > "$WORK/monitor-events.json" 2>/dev/null || echo '[]' > "$WORK/monitor-events.json"
PRIMARY="$(current_primary)"
export FO_PRIMARY_URL="postgres://$PG_OS_USER@127.0.0.1:$(port_of "$PRIMARY")/stockctl?sslmode=disable"
export FO_RUN_STARTED_MS="$RUN_STARTED_MS"

# ---------------------------------------------------------------- 8. the verdict
set +e
client report > "$WORK/report.json" 2>> "$WORK/client.log"
verdict=$?
set -e
cat "$WORK/report.json"
REPORTED=1
if [ "$verdict" = 0 ]; then
  log "PASSED in $((($(now_ms) - RUN_STARTED_MS) / 1000)) s"
else
  log "FAILED: $(node -e 'try { console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).failures.join("; ")) } catch (e) { console.log("no report: " + e.message) }' "$WORK/report.json")"
  log "logs: rerun with FAILOVER_KEEP=1 to keep $WORK"
fi
exit "$verdict"
