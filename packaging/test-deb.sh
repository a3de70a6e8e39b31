#!/usr/bin/env bash
# test-deb.sh DEB - install, check and purge the scrapyd .deb in the systemd
# lab (packaging/systemd-lab.sh): a real systemd as PID 1. Run as root.
#
# The lab runs with a private network (LAB_NET=private), so that the socket on
# 6800 inside cannot collide with anything on the host; its image therefore
# already holds every dependency (LAB_EXTRA_PACKAGES), and apt resolves them
# from the image's package lists without downloading.
#
# Add daemon-level checks in the "installed" section: `check "what" cmd...`
# runs cmd inside the lab (as root, `ct` for short).
set -Eeuo pipefail
deb=$(readlink -f "${1:?usage: $0 dist/scrapyd_VERSION_ARCH.deb}")
here=$(dirname "$(readlink -f "$0")")
export LAB_NAME=${LAB_NAME:-deb} LAB_NET=${LAB_NET:-private}
export LAB_EXTRA_PACKAGES=${LAB_EXTRA_PACKAGES:-adduser logrotate}
lab() { bash "$here/systemd-lab.sh" "$@"; }
ct() { lab exec -- "$@"; }

fails=0
check() {  # check "description" command...
	local desc=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	if ((rc == 0)); then
		echo "PASS  $desc"
	else
		echo "FAIL  $desc"
		echo "$out" | tail -n 15 | sed 's/^/      /'
		fails=$((fails + 1))
	fi
}

started=0
if ! lab status >/dev/null; then
	lab start
	started=1
fi
cleanup() { if ((started)); then lab stop; fi; }
trap cleanup EXIT

lab cp "$deb" /tmp/ >/dev/null
name=$(basename "$deb")

# ---- install
check "apt install ./$name (dependencies resolved by apt)" \
	ct apt-get install -y "/tmp/$name"
check "python3-scrapy is installed" ct dpkg-query -W python3-scrapy
check "user scrapy: system user, home /var/lib/scrapyd, no login shell" \
	ct sh -c 'getent passwd scrapy | grep -Eq "^scrapy:x:[0-9]+:[0-9]+:[^:]*:/var/lib/scrapyd:/usr/sbin/nologin$" && [ "$(id -u scrapy)" -lt 1000 ]'
check "data and log directories belong to scrapy" \
	ct sh -c 'for d in /var/lib/scrapyd /var/lib/scrapyd/eggs /var/lib/scrapyd/dbs /var/lib/scrapyd/items /var/log/scrapyd; do [ "$(stat -c %U:%G "$d")" = scrapy:scrapy ] || { echo "$d"; exit 1; }; done'
check "scrapyd.socket is enabled and listening on 127.0.0.1:6800" \
	ct sh -c 'systemctl is-enabled scrapyd.socket && systemctl is-active scrapyd.socket && ss -Hltn "sport = :6800" | grep -q "127.0.0.1:6800"'
check "scrapyd.service is enabled (starts at boot for queued jobs)" ct systemctl is-enabled scrapyd.service
check "the units pass systemd-analyze verify" \
	ct systemd-analyze verify --man=no /usr/lib/systemd/system/scrapyd.socket /usr/lib/systemd/system/scrapyd.service /usr/lib/systemd/system/scrapyd-crawls.slice
check "conffiles are registered" \
	ct sh -c 'dpkg-query -W -f="\${Conffiles}" scrapyd | grep -q /etc/scrapyd/scrapyd.conf'
# Daemon-level checks go here (the daemon honours --root, SCRAPYD_*, SIGHUP).
check "a request on the socket starts the daemon and gets JSON" \
	ct sh -c 'curl -fsS -m 10 http://127.0.0.1:6800/daemonstatus.json | grep -q "\"status\""'

# ---- remove, purge
check "apt remove stops the socket and the daemon" \
	ct sh -c 'apt-get remove -y scrapyd && ! systemctl is-active scrapyd.socket && ! systemctl is-active scrapyd.service && ! ss -Hltn "sport = :6800" | grep -q .'
check "apt purge removes config, data, logs, the user and the enable links" \
	ct sh -c 'apt-get purge -y scrapyd && ! test -e /etc/scrapyd && ! test -e /var/lib/scrapyd && ! test -e /var/log/scrapyd && ! getent passwd scrapy && ! getent group scrapy && ! test -e /etc/systemd/system/sockets.target.wants/scrapyd.socket && ! test -e /etc/systemd/system/multi-user.target.wants/scrapyd.service'

if ((fails)); then
	echo "test-deb: $fails check(s) FAILED" >&2
	exit 1
fi
echo "test-deb: all checks passed"
