#!/bin/sh
# Installs every Debian package the test suite needs, on a fresh Debian 12
# machine (CI runs this through .ci/run). Idempotent; needs root.
set -eu
PKGS="make curl python3-scrapy python3-venv python3-pip python3-setuptools mercurial git chromium lintian systemd postgresql-15"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing
fi
# The unprivileged user a root daemon runs crawls as, as the package's
# postinst creates it.
if ! getent passwd scrapy >/dev/null; then
	adduser --system --group --home /var/lib/scrapyd --no-create-home --shell /usr/sbin/nologin scrapy >/dev/null 2>&1
fi
