#!/bin/sh
# A cluster on one machine, to try cluster mode (packaging/cluster.md) or
# to watch a change across nodes by hand: a throwaway PostgreSQL
# (pg-cluster.sh) and N daemons (default 3) from bin/scrapyd (make build),
# each with its own root DIR/nodeI, port 6800+I on 127.0.0.1 and node_name
# nodeI. The tests start theirs with testkit.StartCluster instead.
#
#   dev-cluster.sh start DIR [N]   start them; prints each node's URL
#   dev-cluster.sh stop DIR        stop the daemons (their crawls with
#                                  them) and the database, remove DIR
#
# SCRAPYD names another binary; BASE_PORT another first port (6801).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
SCRAPYD=${SCRAPYD:-$here/../bin/scrapyd}
BASE_PORT=${BASE_PORT:-6801}

case "${1:-}" in
start)
	dir=${2:?usage: $0 start DIR [N]}
	n=${3:-3}
	[ -x "$SCRAPYD" ] || { echo "$SCRAPYD: not built (make build)" >&2; exit 1; }
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	# A root daemon runs crawls as the crawl user, who must reach each root.
	chmod 755 "$dir"
	db=$("$here/pg-cluster.sh" start "$dir/pg")
	i=1
	while [ "$i" -le "$n" ]; do
		root=$dir/node$i
		port=$((BASE_PORT + i - 1))
		mkdir -p "$root/etc/scrapyd/conf.d"
		cat >"$root/etc/scrapyd/conf.d/50-dev.conf" <<EOF
[scrapyd]
bind_address = 127.0.0.1
http_port = $port
database = $db
node_name = node$i
advertise_url = http://127.0.0.1:$port
EOF
		nohup "$SCRAPYD" --root "$root" >"$root/daemon.out" 2>&1 &
		echo $! >"$root/pid"
		tries=0
		until curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; do
			tries=$((tries + 1))
			if [ "$tries" -ge 100 ] || ! kill -0 "$(cat "$root/pid")" 2>/dev/null; then
				cat "$root/daemon.out" >&2
				exit 1
			fi
			sleep 0.2
		done
		echo "node$i http://127.0.0.1:$port (root $root)"
		i=$((i + 1))
	done
	;;
stop)
	dir=${2:?usage: $0 stop DIR}
	for pidfile in "$dir"/node*/pid; do
		[ -f "$pidfile" ] || continue
		pid=$(cat "$pidfile")
		# Crawls outlive a stopped daemon, to be adopted at its next
		# start; here they go first.
		pkill -KILL -P "$pid" 2>/dev/null || true
		kill "$pid" 2>/dev/null || true
	done
	sleep 1
	"$here/pg-cluster.sh" stop "$dir/pg"
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start DIR [N] | stop DIR" >&2
	exit 2
	;;
esac
