#!/usr/bin/env bash
# Installs what divan's build, tests and benchmarks need on Debian 12, when it
# is missing.  Run by `make run`, `make test` and `make bench`; idempotent and
# quick when everything is present (dpkg-query only, no network).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang
  libssl-dev libxxhash-dev liblz4-dev libzstd-dev zlib1g-dev libcmocka-dev
  libh2o-evloop-dev libicu-dev duktape-dev libcurl4-openssl-dev libinih-dev
  liblmdb-dev libsqlite3-dev wrk nodejs npm
)

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
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
