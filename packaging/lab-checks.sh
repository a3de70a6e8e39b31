# lab-checks.sh - the helpers of the lab test scripts (test-deb.sh,
# test-idle.sh), sourced by them after they set LAB_NAME and friends and
# $here (this directory): lab and ct (run inside), check/poll/wait_for,
# the API inside the lab and the sample project's jobs.
# shellcheck shell=bash
# The image of every lab test, and make image's base: python3-venv and
# python3-pip are the package's dependencies for uploads' environments;
# python3-setuptools runs the sdists' setup.py of test-deb.sh's 2c.
export LAB_EXTRA_PACKAGES=${LAB_EXTRA_PACKAGES:-adduser logrotate python3-venv python3-pip python3-setuptools}

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

# poll TIMEOUT command...: run command every 0.5s until it succeeds; after
# TIMEOUT seconds run it once more and return its status (and its output).
poll() {
	local end=$((SECONDS + $1))
	shift
	while ((SECONDS < end)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	"$@"
}
wait_for() {  # wait_for "description" TIMEOUT command...
	local desc=$1 timeout=$2
	shift 2
	check "$desc" poll "$timeout" "$@"
}
info() { echo "INFO  $*"; }

# The API, inside the lab (the socket is on the lab's own loopback).
api() {  # api PATH [curl args...]
	local path=$1
	shift
	ct curl -fsS -m 30 "http://127.0.0.1:6800/$path" "$@"
}
# job ID: one line for job ID from listjobs.json: "pending", "running PID
# START_TIME", "finished OUTCOME EXIT_CODE", or "none".
job() {
	api listjobs.json | python3 -c '
import json, sys
d, want = json.load(sys.stdin), sys.argv[1]
for state in ("pending", "running", "finished"):
    for j in d.get(state, []):
        if j.get("id") != want:
            continue
        if state == "running":
            print(state, j.get("pid"), str(j.get("start_time")).replace(" ", "T"))
        elif state == "finished":
            print(state, j.get("outcome"), j.get("exit_code"))
        else:
            print(state)
        sys.exit(0)
print("none")' "$1"
}
job_is() {  # job_is ID PATTERN: the job line matches the shell PATTERN
	local got
	got=$(job "$1") || return 1
	# shellcheck disable=SC2053
	[[ $got == $2 ]] || { echo "job $1: $got, want $2"; return 1; }
}
schedule() {  # schedule JOBID SPIDER [name=value...]: schedule with a chosen job id
	local id=$1 spider=$2 a args=()
	shift 2
	for a in "$@"; do args+=(-d "$a"); done
	api schedule.json -d project=sample -d "spider=$spider" -d "jobid=$id" "${args[@]}" | grep -q '"status": "ok"'
}
unit_of() { echo "scrapyd-crawl-$(ct systemd-escape "$1").service"; }
prop() { ct systemctl show -p "$2" --value "$1"; }  # prop UNIT PROPERTY
prop_is() {  # prop_is UNIT PROPERTY VALUE
	local got
	got=$(prop "$1" "$2")
	[[ $got == "$3" ]] || { echo "$1 $2=$got, want $3"; return 1; }
}
# crawling ID SPIDER: the crawl's log shows that Scrapy is crawling (so its
# signal handlers are in place).
crawling() { ct grep -q "slow page" "/var/log/scrapyd/sample/$2/$1.log"; }
daemon_pid() { prop scrapyd.service MainPID; }
installed_version() { ct dpkg-query -W -f='${Version}' scrapyd; }

# lab_up: start the lab unless it runs. At exit, the lab started here is
# stopped and $tmp (a temporary directory, when set) removed.
started=0
tmp=""
lab_cleanup() {
	if ((started)); then lab stop; fi
	if [[ -n $tmp ]]; then rm -rf "$tmp"; fi
}
lab_up() {
	if ! lab status >/dev/null; then
		lab start
		started=1
	fi
	trap lab_cleanup EXIT
}
