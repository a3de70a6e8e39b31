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
#
# The upgrade check installs a second .deb of a higher version over the first:
# UPGRADE_DEB, or one built here with `make deb VERSION=<version>.1` into a
# temporary directory (dist/ keeps one .deb). Every wait polls with a deadline.
set -Eeuo pipefail
deb=$(readlink -f "${1:?usage: $0 dist/scrapyd_VERSION_ARCH.deb [UPGRADE_DEB]}")
here=$(dirname "$(readlink -f "$0")")
repo=$(dirname "$here")
upgrade_deb=${2:-${UPGRADE_DEB:-}}
export LAB_NAME=${LAB_NAME:-deb} LAB_NET=${LAB_NET:-private}
# shellcheck source=packaging/lab-checks.sh
. "$here/lab-checks.sh"

lab_up

lab cp "$deb" /tmp/ >/dev/null
name=$(basename "$deb")

# ---- install
check "apt install ./$name (dependencies resolved by apt)" \
	ct apt-get install -y "/tmp/$name"
check "python3-scrapy is installed" ct dpkg-query -W python3-scrapy
check "user scrapy: system user, home /var/lib/scrapyd, no login shell" \
	ct sh -c 'getent passwd scrapy | grep -Eq "^scrapy:x:[0-9]+:[0-9]+:[^:]*:/var/lib/scrapyd:/usr/sbin/nologin$" && [ "$(id -u scrapy)" -lt 1000 ]'
# owners DIR=USER:GROUP:MODE...: each directory's owner and mode.
owners() {
	local spec d
	for spec in "$@"; do
		d=${spec%%=*}
		[[ $(ct stat -c %U:%G:%a "$d") == "${spec#*=}" ]] || { echo "$d: $(ct stat -c %U:%G:%a "$d"), want ${spec#*=}"; return 1; }
	done
}
data_owners=(/var/lib/scrapyd=root:root:755 /var/lib/scrapyd/eggs=root:root:755 /var/lib/scrapyd/dbs=root:root:700
	/var/lib/scrapyd/items=scrapy:scrapy:755 /var/log/scrapyd=root:root:755)
check "the daemon's state is root's (eggs, dbs 0700); crawls own only items" owners "${data_owners[@]}"
check "scrapyd.socket is enabled and listening on 127.0.0.1:6800" \
	ct sh -c 'systemctl is-enabled scrapyd.socket && systemctl is-active scrapyd.socket && ss -Hltn "sport = :6800" | grep -q "127.0.0.1:6800"'
check "scrapyd.service is enabled (starts at boot for queued jobs)" ct systemctl is-enabled scrapyd.service
check "the units pass systemd-analyze verify" \
	ct systemd-analyze verify --man=no /usr/lib/systemd/system/scrapyd.socket /usr/lib/systemd/system/scrapyd-wake.socket /usr/lib/systemd/system/scrapyd.service /usr/lib/systemd/system/scrapyd-crawls.slice
check "conffiles are registered" \
	ct sh -c 'dpkg-query -W -f="\${Conffiles}" scrapyd | grep -q /etc/scrapyd/scrapyd.conf'
check "crawls run in /var/lib/scrapyd (crawl_dir's default installed), and config check finds that scrapy reaches what crawls need" \
	ct sh -c 'scrapyd config show | grep -Eq "^crawl_dir +/var/lib/scrapyd +live" && scrapyd config check'
# Daemon-level checks go here (the daemon honours --root, SCRAPYD_*, SIGHUP).
# ---- the daemon, in a real systemd
# 1. socket activation
check "scrapyd.service is inactive before the first request" \
	eval '! ct systemctl is-active scrapyd.service'
check "the first request on the socket starts the daemon: JSON with \"launcher\": \"systemd\"" \
	eval "ct curl -fsS -m 20 http://127.0.0.1:6800/diagnostics.json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"launcher\"] == \"systemd\" and d[\"status\"] == \"ok\" and d[\"config_error\"] is None, d'"
check "daemonstatus.json answers exactly Scrapyd's keys, in its order" \
	eval "ct curl -fsS -m 20 http://127.0.0.1:6800/daemonstatus.json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert list(d) == [\"pending\", \"running\", \"finished\", \"status\", \"node_name\"], d'"
check "scrapyd.service is active after it" ct systemctl is-active scrapyd.service

# 2. deploy and a crawl that finishes
lab cp "$repo/appliance/e2e/testdata/sample" /tmp/sample-project >/dev/null
check "scrapydctl builds the sample project's egg" \
	ct sh -c 'cd /tmp/sample-project && scrapydctl deploy --build-egg /tmp/sample.egg'
check "addversion.json uploads the egg (4 spiders)" \
	eval 'api addversion.json -F project=sample -F version=r1 -F egg=@/tmp/sample.egg | grep -q "\"spiders\": 4"'
check "schedule.json: params, limit=3" schedule params1 params limit=3
wait_for "params finishes with outcome \"finished\", exit code 0" 90 job_is params1 "finished finished 0"
check "its log is /var/log/scrapyd/sample/params/params1.log" \
	ct sh -c 'grep -q "Spider closed (finished)" /var/log/scrapyd/sample/params/params1.log'
check "its items are /var/lib/scrapyd/items/sample/params/params1.jl (3 lines)" \
	ct sh -c '[ "$(wc -l </var/lib/scrapyd/items/sample/params/params1.jl)" = 3 ]'
check "scrapyd.out, scrapyd.err and the daemon's scrapyd.log are in /var/log/scrapyd" \
	ct sh -c 'test -f /var/log/scrapyd/scrapyd.out && test -f /var/log/scrapyd/scrapyd.err && grep -q "scrapyd started" /var/log/scrapyd/scrapyd.log'
check "journald: journalctl SCRAPYD_JOB=params1 finds the daemon's lines about it, with SCRAPYD_PROJECT, SCRAPYD_SPIDER and an info PRIORITY" \
	ct sh -c 'journalctl --no-pager -o cat SCRAPYD_JOB=params1 | grep -q "^crawl ended" && journalctl --no-pager -o verbose SCRAPYD_JOB=params1 SYSLOG_IDENTIFIER=scrapyd | grep -q "SCRAPYD_PROJECT=sample" && journalctl --no-pager -o verbose SCRAPYD_JOB=params1 | grep -q "SCRAPYD_SPIDER=params" && journalctl --no-pager -o verbose SCRAPYD_JOB=params1 | grep -q "PRIORITY=6"'
check "/healthz and /readyz answer ok; /metrics counts params1's end" \
	ct sh -c 'curl -fsS -m 20 http://127.0.0.1:6800/healthz | grep -qx ok && curl -fsS -m 20 http://127.0.0.1:6800/readyz | grep -qx ok && curl -fsS -m 20 http://127.0.0.1:6800/metrics | grep -q "^scrapyd_jobs_finished_total{outcome=\"finished\",project=\"sample\",spider=\"params\"} 1$"'
check "the sample alert rules are installed in /usr/share/doc/scrapyd/examples" \
	ct test -s /usr/share/doc/scrapyd/examples/scrapyd-alerts.yml
check "the page on running a cluster is installed in /usr/share/doc/scrapyd" \
	ct sh -c 'zcat /usr/share/doc/scrapyd/cluster.md.gz | grep -q "^# Running a Scrapyd cluster"'

# 2b. confinement: a hostile project's crawl cannot reach the daemon's state,
# the sample project's egg and logs, or the system; only its own files
lab cp "$here/testdata/intruder" /tmp/intruder-project >/dev/null
check "addversion.json uploads a hostile project, intruder" \
	eval 'ct sh -c "cd /tmp/intruder-project && scrapydctl deploy --build-egg /tmp/intruder.egg" && api addversion.json -F project=intruder -F version=1 -F egg=@/tmp/intruder.egg | grep -q "\"spiders\": 2"'
check "listing its spiders on upload runs confined too: its import-time write got EROFS, and nothing was planted" \
	eval 'api "listspiders.json?project=intruder" | grep -q "\"atimport-erofs\"" && ! ct test -e /var/lib/scrapyd/items/planted-at-import'
wait_for "the listing's unit and output files are gone" 10 \
	eval '[ -z "$(ct systemctl list-units --all --no-legend "scrapyd-crawl-list*")" ] && [ -z "$(ct ls -A /run/scrapyd/list)" ]'
check "schedule.json: intruder's probe" \
	eval 'api schedule.json -d project=intruder -d spider=probe -d jobid=probe1 -d other_egg=/var/lib/scrapyd/eggs/sample/r1.egg | grep -q "\"status\": \"ok\""'
wait_for "the probe finishes" 90 job_is probe1 "finished finished 0"
# probed WANT: every attempt of the probe's item ended as WANT says.
probed() {
	ct cat /var/lib/scrapyd/items/intruder/probe/probe1.jl | python3 -c '
import json, sys
got, want = json.loads(sys.stdin.readline()), json.loads(sys.argv[1])
bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
sys.exit("(got, want): %s" % bad if bad else 0)' "$1"
}
check "the crawl cannot write eggs, dbs, other logs, the daemon's log or /etc (EROFS), nor read the sample's egg or the job database (ENOENT); its log is root's (EACCES)" \
	probed '{"write_eggs": "EROFS", "read_other_egg": "ENOENT", "read_db": "ENOENT", "rename_dbs": "EROFS",
		"write_other_log": "EROFS", "write_daemon_log": "EACCES", "write_etc": "EROFS", "see_pid1": false}'
check "it writes its own items, Scrapy's .scrapy cache and its private /tmp, as scrapy" \
	eval "probed '{\"write_own_items\": \"ok\", \"write_httpcache\": \"ok\", \"write_tmp\": \"ok\", \"uid\": '\$(ct id -u scrapy)'}'"
check "nothing it planted outside its own directories exists" \
	eval '! ct sh -c "ls -d /var/lib/scrapyd/eggs/intruder/planted.egg /var/lib/scrapyd/dbs.old /var/log/scrapyd/sample/params/planted.log /etc/scrapyd/conf.d/99-planted.conf /tmp/planted" 2>/dev/null'
check "the sample project's egg and the job database are intact" \
	eval 'api listversions.json?project=sample | grep -q "\"r1\"" && api listjobs.json?project=sample | grep -q params1'

# 2c. an upload's Python environment: installed in the listing's sandbox,
# as scrapy, only its own directory writable, no network (no pip_index_url).
# Two sdists go in wheelhouses: kind installs; evil's setup.py tries to
# write items_dir (scrapy's own) and to reach the API, then fails with
# what it got. --no-build-isolation: offline, pip cannot fetch setuptools.
lab cp "$here/testdata/sdists" /tmp/sdists >/dev/null
ct sh -c 'cd /tmp/sdists && for p in kind evil; do tar czf $p-1.0.tar.gz $p-1.0 && python3 -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], \"w\"); z.write(sys.argv[2], sys.argv[2]); z.close()" /tmp/$p-wheels.zip $p-1.0.tar.gz && echo "$p==1.0" >/tmp/$p-req.txt; done'
ct sh -c 'printf "[scrapyd]\npip_options = --no-build-isolation\n" >/etc/scrapyd/conf.d/30-envs.conf'
wait_for "conf.d/30-envs.conf is applied live" 30 \
	ct grep -q "configuration reloaded.*pip_options" /var/log/scrapyd/scrapyd.log
# env_has NAME: the (only) environment's scrapyd-env.json lists package NAME.
env_has() { ct sh -c "grep -q '\"name\": \"$1\"' /var/lib/scrapyd/envs/*/scrapyd-env.json"; }
check "an upload with an sdist and its requirement is accepted (4 spiders); its environment lists kind" \
	eval 'api addversion.json -F project=kind -F version=1 -F egg=@/tmp/sample.egg -F requirements=@/tmp/kind-req.txt -F wheels=@/tmp/kind-wheels.zip | grep -q "\"spiders\": 4" && env_has kind'
check "the environment is root's (crawls read it, cannot change it), under /var/lib/scrapyd/envs" \
	eval '[ "$(ct sh -c "stat -c %U /var/lib/scrapyd/envs/*/bin/python")" = root ]'
check "an sdist whose setup.py writes outside its environment is refused: EROFS in the sandbox, and no network" \
	eval 'out=$(api addversion.json -F project=evil -F version=1 -F egg=@/tmp/sample.egg -F requirements=@/tmp/evil-req.txt -F wheels=@/tmp/evil-wheels.zip); echo "$out"; echo "$out" | grep -q "write=EROFS" && ! echo "$out" | grep -q "connect=ok"'
check "nothing it planted exists, no project evil, and no environment of it is left" \
	eval '! ct test -e /var/lib/scrapyd/items/planted-by-setup && ! api listprojects.json | grep -q evil && [ "$(ct sh -c "ls -A /var/lib/scrapyd/envs | wc -l")" = 1 ]'
wait_for "the installs' units and output files are gone" 10 \
	eval '[ -z "$(ct systemctl list-units --all --no-legend "scrapyd-crawl-env*")" ] && [ -z "$(ct ls -A /run/scrapyd/list)" ]'
check "delproject.json kind removes its environment" \
	eval 'api delproject.json -d project=kind | grep -q "\"ok\"" && [ -z "$(ct ls -A /var/lib/scrapyd/envs)" ]'

# 3. a crawl unit, its user and its limits
ct sh -c 'printf "[scrapyd]\ncrawl_memory_max = 512M\ncrawl_tasks_max = 64\ncrawl_cpu_quota = 50\ncrawl_max_runtime = 3600\n" >/etc/scrapyd/conf.d/20-limits.conf'
wait_for "conf.d/20-limits.conf is applied live" 30 \
	ct grep -q "configuration reloaded.*crawl_memory_max" /var/log/scrapyd/scrapyd.log
check "systemctl reload scrapyd succeeds; config_error stays null" \
	eval 'ct systemctl reload scrapyd && ct systemctl is-active scrapyd && api diagnostics.json | grep -q "\"config_error\": null"'
check "schedule.json: slow (job id kill-9)" schedule kill-9 slow
unit=$(unit_of kill-9)
wait_for "the crawl runs as the transient unit $unit" 60 prop_is "$unit" SubState running
wait_for "the crawl is crawling" 60 crawling kill-9 slow
check "the unit is in scrapyd-crawls.slice and runs as User=scrapy" \
	eval "prop_is '$unit' Slice scrapyd-crawls.slice && prop_is '$unit' User scrapy"
pid=$(prop "$unit" MainPID)
check "its main process ($pid) runs with a uid other than 0 (the uid of scrapy)" \
	ct sh -c "awk '/^Uid:/ {print \$2, \$3}' /proc/$pid/status | grep -qx \"\$(id -u scrapy) \$(id -u scrapy)\""
check "the unit has MemoryMax=536870912 TasksMax=64 CPUQuotaPerSecUSec=500ms RuntimeMaxUSec=1h" \
	eval "prop_is '$unit' MemoryMax 536870912 && prop_is '$unit' TasksMax 64 && prop_is '$unit' CPUQuotaPerSecUSec 500ms && prop_is '$unit' RuntimeMaxUSec 1h"
check "listjobs.json shows the unit's MainPID as pid" job_is kill-9 "running $pid *"
# exposure UNIT MAX: systemd-analyze security's overall exposure of UNIT
# (0 confined .. 10 not at all) is at most MAX.
exposure() {
	local line score
	line=$(ct systemd-analyze security --no-pager "$1" | tail -n 1)
	score=$(sed -E 's/.*: ([0-9.]+).*/\1/' <<<"$line")
	python3 -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$score" "$2" || { echo "$line"; return 1; }
}
info "systemd-analyze security $unit: $(ct systemd-analyze security --no-pager "$unit" 2>&1 | tail -n 1)"
info "systemd-analyze security scrapyd.service: $(ct systemd-analyze security --no-pager scrapyd.service 2>&1 | tail -n 1)"
check "systemd-analyze security: the crawl unit's exposure is at most 2.5 (it was 9.0 unconfined)" exposure "$unit" 2.5
check "systemd-analyze security: scrapyd.service's exposure is at most 3.0" exposure scrapyd.service 3.0

# 4. kill -9 of the daemon and a restart: the crawl goes on and is adopted
before=$(job kill-9)
old=$(daemon_pid)
check "kill -9 of the daemon (pid $old)" ct kill -9 "$old"
check "systemctl restart scrapyd" ct systemctl restart scrapyd
check "a new daemon runs" eval "p=\$(daemon_pid) && [ \"\$p\" != 0 ] && [ \"\$p\" != '$old' ]"
check "the crawl unit kept running with the same MainPID" \
	eval "prop_is '$unit' SubState running && prop_is '$unit' MainPID '$pid'"
check "listjobs.json lists it as running with the same pid and start_time" job_is kill-9 "$before"
check "cancel.json" eval 'api cancel.json -d project=sample -d job=kill-9 | grep -q "\"prevstate\": \"running\""'
wait_for "it finishes with outcome \"cancelled\"" 60 job_is kill-9 "finished cancelled *"
wait_for "its unit is released" 30 prop_is "$unit" LoadState not-found

# 5. a crawl that ends while the daemon is stopped
# pages=25: about 5s of crawling, so that it ends after the daemon stopped.
# A crawl's end pokes scrapyd-wake.socket, which would start the daemon at
# once (test-idle.sh shows that): it is stopped too here, so that the end
# is found by the next start, as after a crash or a reboot.
check "schedule.json: slow, pages=25 (job id offline)" schedule offline slow pages=25
unit=$(unit_of offline)
wait_for "it runs" 60 prop_is "$unit" SubState running
check "systemctl stop scrapyd scrapyd-wake.socket (scrapyd.socket stays)" \
	eval 'ct systemctl stop scrapyd-wake.socket scrapyd && ct systemctl is-active scrapyd.socket'
wait_for "the crawl ends while the daemon is stopped (unit active/exited)" 60 prop_is "$unit" SubState exited
check "the daemon is still stopped" eval '! ct systemctl is-active scrapyd.service'
check "after the next start (a request) it is recorded: outcome \"finished\", exit code 0" \
	poll 30 job_is offline "finished finished 0"
wait_for "its unit is released" 30 prop_is "$unit" LoadState not-found
check "systemctl start scrapyd-wake.socket" ct systemctl start scrapyd-wake.socket

# 6. cancel, then forced cancel through the unit
check "schedule.json: slow, linger=600 (job id linger)" schedule linger slow linger=600
unit=$(unit_of linger)
wait_for "it is crawling" 60 crawling linger slow
check "first cancel.json" eval 'api cancel.json -d project=sample -d job=linger | grep -q "\"prevstate\": \"running\""'
wait_for "the spider is closing (SIGINT reached Scrapy)" 30 \
	ct grep -q "Closing spider (shutdown)" /var/log/scrapyd/sample/slow/linger.log
sleep 2
check "a moment later it is still running (closed() lingers)" \
	eval "job_is linger 'running *' && prop_is '$unit' SubState running"
check "second cancel.json" eval 'api cancel.json -d project=sample -d job=linger | grep -q "\"prevstate\": \"running\""'
wait_for "it finishes with outcome \"cancelled\"" 60 job_is linger "finished cancelled *"
wait_for "its unit is released" 30 prop_is "$unit" LoadState not-found

# 7. stopping the slice stops every crawl
check "schedule.json: two slow crawls" eval 'schedule slice1 slow && schedule slice2 slow'
wait_for "both are crawling" 60 eval 'crawling slice1 slow && crawling slice2 slow'
check "systemctl stop scrapyd-crawls.slice" ct systemctl stop scrapyd-crawls.slice
wait_for "both are finished" 60 eval 'job_is slice1 "finished *" && job_is slice2 "finished *"'
check "no crawl unit is left" eval '! ct systemctl list-units --all --plain --no-legend "scrapyd-crawl-*" | grep .'

# 8. upgrade over a running crawl
if [[ -z $upgrade_deb ]]; then
	version=$(dpkg-deb -f "$deb" Version)
	arch=$(dpkg-deb -f "$deb" Architecture)
	tmp=$(mktemp -d)
	upgrade_deb=$tmp/scrapyd_${version}.1_$arch.deb
	check "build the upgrade .deb (make deb VERSION=$version.1)" \
		make -C "$repo" deb "VERSION=$version.1" "DEB=$upgrade_deb"
fi
lab cp "$upgrade_deb" /tmp/ >/dev/null
new=$(basename "$upgrade_deb")
newversion=$(dpkg-deb -f "$upgrade_deb" Version)
ct sh -c 'echo "# edited by test-deb" >>/etc/scrapyd/conf.d/000-default'
check "schedule.json: slow (job id upgrade)" schedule upgrade slow
unit=$(unit_of upgrade)
wait_for "it is crawling" 60 crawling upgrade slow
pid=$(prop "$unit" MainPID)
before=$(job upgrade)
old=$(daemon_pid)
check "apt install ./$new over the installed version" \
	ct env DEBIAN_FRONTEND=noninteractive apt-get install -y "/tmp/$new"
check "version $newversion is installed" eval "[ \"\$(installed_version)\" = '$newversion' ]"
check "the edited conffile conf.d/000-default and conf.d/20-limits.conf survive" \
	ct sh -c 'grep -q "edited by test-deb" /etc/scrapyd/conf.d/000-default && grep -q "crawl_memory_max = 512M" /etc/scrapyd/conf.d/20-limits.conf'
check "the crawl unit survives with the same MainPID" \
	eval "prop_is '$unit' SubState running && prop_is '$unit' MainPID '$pid'"
check "the upgrade restarted the daemon (new pid)" eval "p=\$(daemon_pid) && [ \"\$p\" != 0 ] && [ \"\$p\" != '$old' ]"
check "the daemon answers and lists the crawl as running (same pid and start_time)" job_is upgrade "$before"
check "the egg survives (listversions.json: r1)" eval 'api "listversions.json?project=sample" | grep -q "\"r1\""'
check "finished jobs survive" eval 'job_is params1 "finished finished 0" && job_is linger "finished cancelled *"'
check "cancel.json" eval 'api cancel.json -d project=sample -d job=upgrade | grep -q "\"prevstate\": \"running\""'
wait_for "it finishes with outcome \"cancelled\"" 60 job_is upgrade "finished cancelled *"

# ---- remove, purge
check "apt remove stops the socket and the daemon" \
	ct sh -c 'apt-get remove -y scrapyd && ! systemctl is-active scrapyd.socket && ! systemctl is-active scrapyd.service && ! ss -Hltn "sport = :6800" | grep -q .'
check "apt purge removes config, data, logs, the user and the enable links" \
	ct sh -c 'apt-get purge -y scrapyd && ! test -e /etc/scrapyd && ! test -e /var/lib/scrapyd && ! test -e /var/log/scrapyd && ! test -e /run/scrapyd && ! getent passwd scrapy && ! getent group scrapy && ! test -e /etc/systemd/system/sockets.target.wants/scrapyd.socket && ! test -e /etc/systemd/system/multi-user.target.wants/scrapyd.service'

if ((fails)); then
	echo "test-deb: $fails check(s) FAILED" >&2
	exit 1
fi
echo "test-deb: all checks passed"
