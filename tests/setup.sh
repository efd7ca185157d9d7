#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine; installs only what is missing.
# OS packages (needs root or sudo): redis-server, and promtool (Debian's prometheus package)
# for the alert-rule and config checks, kubectl (kustomize built in) for the deploy/k8s renders,
# nginx for the replica test behind a balancer (Sentinel runs as `redis-server --sentinel`, so
# redis-server is enough), chromium and chromium-driver for the dashboard's browser tests.
# Python: the package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v promtool >/dev/null || missing+=(prometheus)
command -v kubectl >/dev/null || missing+=(kubectl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# the ledger tests' own PostgreSQL (initdb + pg_ctl; Debian keeps them in /usr/lib/postgresql/*/bin)
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null ||
  missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
pip install -q -e '.[test]'
