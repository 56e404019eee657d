#!/usr/bin/env bash
# Installs what divan's build, tests and benchmarks need on Debian 12, when it
# is missing.  Run by `make run`, `make test` and `make bench`; idempotent and
# quick when everything is present (dpkg-query only, no network).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang
  libssl-dev libxxhash-dev liblz4-dev libzstd-dev zlib1g-dev libcmocka-dev
  libh2o-evloop-dev libicu-dev duktape-dev libcurl4-openssl-dev
  liblmdb-dev libsqlite3-dev wrk nodejs npm
  openssl
  nginx
)
# openssl (the command): tests/http/tls.test.mjs makes its certificates.
# Benchmark-only packages: LMDB and SQLite (storage anchors), wrk (HTTP load),
# nginx (static-file reference for GET; `make bench` starts its own nginx as
# the current user on a loopback port with its own config in a temporary
# directory; the system service is never started, see below).

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing+=("$p") ;;
  esac
done
# node and npm may come from outside Debian's packages (already on PATH).
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do
    [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p")
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "deps.sh: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "deps.sh: these Debian packages are missing: ${missing[*]}" >&2
    echo "deps.sh: run as root (or install them) and try again: apt-get install ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# Installing nginx would start (and enable) the system nginx on port 80.  A
# policy-rc.d that answers 101 ("action forbidden") for the length of the
# install keeps apt from starting any service; under systemd the unit is then
# disabled too.  An existing policy-rc.d is left as it is.
policy=/usr/sbin/policy-rc.d
own_policy=
if [[ " ${missing[*]} " == *" nginx "* ]] && [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# divan scripts/deps.sh: no service starts during this install\nexit 101\n' |
    $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  own_policy=1
  trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [ -n "$own_policy" ]; then
  $SUDO rm -f "$policy"
  trap - EXIT
fi
if [[ " ${missing[*]} " == *" nginx "* ]] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
