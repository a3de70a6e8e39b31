#!/usr/bin/env bash
# test-idle.sh DEB [UPGRADE_DEB] - the daemon sleeps and wakes (issue 19), in
# the systemd lab (LAB_NAME=idle, LAB_NET=private) with the installed package
# and idle_timeout = 3s, max_proc = 1. Run as root; bounded to a few minutes
# (every wait polls with a deadline).
#
# It shows: the service goes inactive while the sockets stay listening and no
# scrapyd process is left (RSS 0); a request wakes it (cold start: first
# request to answer, 20 tries, p50/p99 printed as INFO); with two 5-second
# crawls queued the daemon sleeps during the first and the second starts
# within a second of the first's end with no request in between (the crawl's
# poke on scrapyd-wake.socket); a recurring run fires on time while it
# sleeps (the transient wake timer); an upgrade while it sleeps and a crawl
# runs loses nothing.
set -Eeuo pipefail
deb=$(readlink -f "${1:?usage: $0 dist/scrapyd_VERSION_ARCH.deb [UPGRADE_DEB]}")
here=$(dirname "$(readlink -f "$0")")
repo=$(dirname "$here")
upgrade_deb=${2:-${UPGRADE_DEB:-}}
export LAB_NAME=${LAB_NAME:-idle} LAB_NET=${LAB_NET:-private}
# shellcheck source=packaging/lab-checks.sh
. "$here/lab-checks.sh"

lab_up

asleep() {  # the service is inactive, both sockets listen, no scrapyd process
	ct sh -c '! systemctl is-active -q scrapyd.service && systemctl is-active -q scrapyd.socket scrapyd-wake.socket && ! pgrep -x scrapyd'
}
awake() { ct systemctl is-active -q scrapyd.service; }
# usec UNIT PROPERTY: a monotonic timestamp property of a unit, in µs.
usec() { prop "$1" "$2"; }

lab cp "$deb" /tmp/ >/dev/null
check "apt install ./$(basename "$deb")" ct apt-get install -y "/tmp/$(basename "$deb")"
check "idle_timeout = 3s, max_proc = 1 (conf.d; applies at the next start)" \
	ct sh -c 'printf "[scrapyd]\nidle_timeout = 3s\nmax_proc = 1\n" >/etc/scrapyd/conf.d/50-idle.conf && systemctl restart scrapyd.service'
check "scrapyd-wake.socket is enabled and listening (group scrapy, 0660)" \
	ct sh -c 'systemctl is-enabled scrapyd-wake.socket && systemctl is-active scrapyd-wake.socket && [ "$(stat -c %G:%a /run/scrapyd/wake.sock)" = scrapy:660 ]'
lab cp "$repo/appliance/e2e/testdata/sample" /tmp/sample-project >/dev/null
check "the sample project is uploaded" \
	eval 'ct sh -c "cd /tmp/sample-project && scrapydctl deploy --build-egg /tmp/sample.egg" && api addversion.json -F project=sample -F version=r1 -F egg=@/tmp/sample.egg | grep -q "\"spiders\": 4"'

# ---- 1. idle exit
wait_for "the service goes inactive after 3s idle; the sockets stay listening; no scrapyd process (RSS 0)" 20 asleep
check "the exit was clean (status 0, result success) and said so in the log" \
	eval 'prop_is scrapyd.service Result success && prop_is scrapyd.service ExecMainStatus 0 && ct grep -q "nothing to do: exiting" /var/log/scrapyd/scrapyd.log'

# ---- 2. a request wakes it: cold start, 20 tries
times=()
for i in $(seq 20); do
	poll 20 asleep >/dev/null 2>&1 || break
	t=$(ct curl -fsS -m 30 -o /dev/null -w '%{time_total}' http://127.0.0.1:6800/daemonstatus.json) || break
	times+=("$t")
done
check "20 requests, each to a sleeping daemon, are answered" eval '[ "${#times[@]}" = 20 ]'
if ((${#times[@]})); then
	info "cold start, first request to answer over ${#times[@]} tries: $(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {p50=a[int((NR+1)/2)]; p99=a[NR]; printf "p50 %.0f ms, p99 %.0f ms, min %.0f ms", p50*1000, p99*1000, a[1]*1000}')"
fi

# ---- 3. a crawl's end wakes it: two 5-second crawls, max_proc = 1
wait_for "asleep before scheduling" 20 asleep
check "schedule.json: slow pages=25 twice (a1 runs, a2 waits for the slot)" \
	eval 'schedule a1 slow pages=25 && schedule a2 slow pages=25'
u1=$(unit_of a1) u2=$(unit_of a2)
wait_for "the daemon sleeps while a1 runs" 30 eval "asleep && prop_is '$u1' SubState running"
# a1's exit time, caught inside the lab before the woken daemon releases
# its unit (its properties go with it).
ct sh -c 'for i in $(seq 3000); do v=$(systemctl show -p ExecMainExitTimestampMonotonic --value "$1"); case $v in ""|0) sleep 0.02;; *) echo "$v" >/tmp/a1.exit; exit;; esac; done' sh "$u1" &
catcher=$!
wait_for "a1 ends and a2's unit starts, no request in between" 60 eval "prop_is '$u2' ActiveState active"
kill "$catcher" 2>/dev/null || true
end1=$(ct cat /tmp/a1.exit 2>/dev/null || echo 0)
start2=$(usec "$u2" ExecMainStartTimestampMonotonic)
info "a1 exit to a2 start: $(((start2 - end1) / 1000)) ms"
check "a2 started within a second of a1's end" eval '[ "$end1" -gt 0 ] && [ $((start2 - end1)) -lt 1000000 ]'
wait_for "a2 ends and the daemon sleeps again" 60 eval "! prop_is '$u2' SubState running && asleep"
check "both ended finished, with their logs" \
	eval 'job_is a1 "finished finished 0" && job_is a2 "finished finished 0" && ct grep -q "Spider closed (finished)" /var/log/scrapyd/sample/slow/a1.log && ct grep -q "Spider closed (finished)" /var/log/scrapyd/sample/slow/a2.log'

# ---- 4. a recurring run fires on time while it sleeps
wait_for "asleep before adding the schedule" 20 asleep
check "addschedule.json: params every 20s" \
	eval 'api addschedule.json -d project=sample -d spider=params -d every=20s -d schedule=wake20 | grep -q "\"status\": \"ok\""'
wait_for "asleep, a wake timer left" 20 eval 'asleep && ct systemctl is-active -q scrapyd.timer'
wait_for "the timer starts the daemon and the run starts" 40 eval 'ct sh -c "systemctl list-units --all --plain --no-legend \"scrapyd-crawl-*\" | grep -qv -e a1 -e a2"'
# lateness: the run's start (its unit) against its due time (the job's).
late=$(api "listjobs.json?project=sample" | python3 -c '
import json, sys, datetime
d = json.load(sys.stdin)
runs = [j for s in ("running", "finished") for j in d.get(s, []) if j.get("schedule") == "wake20"]
j = runs[0]
f = "%Y-%m-%d %H:%M:%S.%f"
due = datetime.datetime.strptime(j["due_time"], f)
start = datetime.datetime.strptime(j["start_time"], f)
print(int((start - due).total_seconds() * 1000))') || late=""
info "recurring run while asleep: started ${late:-?} ms after its due time"
check "it started within a second of its due time" eval '[ -n "$late" ] && [ "$late" -lt 1000 ] && [ "$late" -gt -1000 ]'
check "delschedule.json" eval 'api delschedule.json -d project=sample -d schedule=wake20 | grep -q "\"status\": \"ok\""'

# ---- 5. an upgrade while it sleeps and a crawl runs loses nothing
if [[ -z $upgrade_deb ]]; then
	tmp=$(mktemp -d)
	version=$(dpkg-deb -f "$deb" Version)
	arch=$(dpkg-deb -f "$deb" Architecture)
	upgrade_deb=$tmp/scrapyd_${version}.1_$arch.deb
	check "build the upgrade .deb (make deb VERSION=$version.1)" \
		make -C "$repo" deb "VERSION=$version.1" "DEB=$upgrade_deb"
fi
lab cp "$upgrade_deb" /tmp/ >/dev/null
poll 60 eval 'api "listjobs.json?project=sample" | grep -q "\"running\": \[\]"' >/dev/null 2>&1 || true
check "schedule.json: slow pages=40 (job up1)" schedule up1 slow pages=40
wait_for "asleep while up1 runs" 30 eval "asleep && prop_is '$(unit_of up1)' SubState running"
check "apt install the upgrade while it sleeps" ct apt-get install -y "/tmp/$(basename "$upgrade_deb")"
check "still asleep after the upgrade (nothing started it), up1 still running" \
	eval "asleep && prop_is '$(unit_of up1)' SubState running"
wait_for "up1 ends; its poke starts the new daemon, which records it finished" 60 job_is up1 "finished finished 0"
check "the new version answers; eggs and finished jobs survived" \
	eval 'api daemonstatus.json | grep -q "\"status\": \"ok\"" && api "listversions.json?project=sample" | grep -q "\"r1\"" && job_is a1 "finished finished 0" && job_is a2 "finished finished 0"'

# ---- 6. the appliance image (make image) boots in the lab and answers
if [[ -n ${IMAGE_ROOT:-} ]]; then
	lab stop >/dev/null 2>&1
	started=0
	t0=$(date +%s%N)
	if LAB_ROOT=$IMAGE_ROOT lab start >/dev/null 2>&1; then
		started=1
		poll 60 ct curl -fsS -m 5 -o /dev/null http://127.0.0.1:6800/daemonstatus.json >/dev/null 2>&1 || true
		t1=$(date +%s%N)
		info "image: boot to first answer on 6800 in $(((t1 - t0) / 1000000)) ms (lab start included)"
	fi
	check "the image boots in the lab and answers on 6800" \
		eval 'ct curl -fsS -m 10 http://127.0.0.1:6800/daemonstatus.json | grep -q "\"status\": \"ok\""'
	check "in the image: the sockets enabled, the user scrapy, the package's directories" \
		ct sh -c 'systemctl is-enabled scrapyd.socket scrapyd-wake.socket && getent passwd scrapy && [ "$(stat -c %U:%a /var/lib/scrapyd/dbs)" = root:700 ] && [ -s /etc/machine-id ]'
else
	info "IMAGE_ROOT not set: the appliance image is not booted (make image; IMAGE_ROOT=build/image/rootfs)"
fi

if ((fails)); then
	echo "test-idle: $fails check(s) FAILED" >&2
	exit 1
fi
echo "test-idle: all checks passed"
