#!/usr/bin/env bash
# Installs the server packages the tests start as local processes (PostgreSQL, RabbitMQ), the
# browser the page test drives and Prometheus with its promtool (the alerting rules' unit tests,
# the dashboard checked against a real Prometheus), when they are missing. Needs root (or passwordless sudo) only when something is missing; prints what
# it would need otherwise.
set -euo pipefail

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || need+=(rabbitmq-server)
command -v chromium >/dev/null || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
command -v runuser >/dev/null || need+=(util-linux)

if (( ${#need[@]} == 0 )); then
  exit 0
fi

sudo=""
if (( EUID != 0 )); then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "provision.sh: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
fi

echo "provision.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services on install where it can; the tests run their own nodes
# (Prometheus included).
for service in rabbitmq-server postgresql prometheus; do
  $sudo service "$service" stop >/dev/null 2>&1 || true
done
