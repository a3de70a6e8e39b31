#!/bin/sh
# Installs every Debian package the test suite needs, on a fresh Debian 12
# machine (CI runs this through .ci/run). Idempotent; needs root.
set -eu
PKGS="python3-scrapy python3-setuptools mercurial git chromium lintian systemd"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
