#!/usr/bin/env bash
# Installs the Debian packages booture's tests, demo and benchmarks use.
# Run as root; does nothing for packages already installed.
set -euo pipefail
pkgs=(iproute2 iputils-ping wireguard-tools wireguard-go nftables procps curl shellcheck)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(iperf3 wrk nginx-light hyperfine)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# A package may start a service we do not want (nginx for benchmarks).
systemctl disable --now nginx >/dev/null 2>&1 || true
