#!/bin/sh
# A throwaway PostgreSQL 15 cluster for the tests (issue 15 point 8):
#
#   pg-cluster.sh start [DIR]   initdb and start a cluster in DIR (default: a
#                               new temporary directory); prints its URL.
#                               PG_OPTIONS adds server options (-c name=value)
#   pg-cluster.sh url DIR       prints the URL of the cluster in DIR
#   pg-cluster.sh stop DIR      stops it (immediate: nothing in it matters)
#                               and removes DIR
#   pg-cluster.sh down DIR MODE stops the server (MODE fast or immediate: a
#                               clean shutdown or a crash), keeping DIR
#   pg-cluster.sh up DIR        starts it again on the same port
#   pg-cluster.sh restart DIR MODE   down, then up
#
# down, up and restart are for the fault tests, each on its own cluster
# (appliance/store/pgstore/pgtest.Cluster): never the one a whole test run
# shares.
#
# The cluster runs as the unprivileged `postgres` user when started by root
# (initdb refuses root), as the caller otherwise. Local connections are
# trusted: the socket is in DIR, which only its user can enter, and TCP
# listens on 127.0.0.1 only (a free port, so that several runs can coexist).
# fsync is off: a crash loses a test database, never anything else.
set -eu
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

url() {
	port=$(cat "$1/port")
	# The socket directory in the query (libpq and pgx both read host=),
	# the port in both: it names the socket file.
	echo "postgres://postgres@localhost:$port/postgres?host=$1&sslmode=disable"
}

# free_port prints a TCP port nobody listens on now.
free_port() {
	while :; do
		p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000 ))
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
			echo "$p"
			return
		fi
	done
}

# server_start starts the server of the cluster in $1 on port $2, with
# the options start was given in PG_OPTIONS (kept in $1/options for up).
server_start() {
	as_owner "$BIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 start \
		-o "-p $2 -k $1 -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 $(cat "$1/options")" >/dev/null
}

# server_stop stops the server of the cluster in $1, in mode $2.
server_stop() {
	case "$2" in
	fast | immediate) ;;
	*)
		echo "$0: mode must be fast or immediate, not '$2'" >&2
		exit 2
		;;
	esac
	as_owner "$BIN/pg_ctl" -D "$1/data" -m "$2" -w -t 60 stop >/dev/null
}

# server_up starts the server of the cluster in $1 again, on its port:
# clients keep their URL.
server_up() {
	server_start "$1" "$(cat "$1/port")" || { tail -n 20 "$1/server.log" >&2; exit 1; }
}

case "${1:-}" in
start)
	dir=${2:-$(mktemp -d /tmp/scrapyd-pg.XXXXXX)}
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ "$(id -u)" = 0 ]; then
		chown postgres: "$dir"
	fi
	chmod 700 "$dir"
	as_owner "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	printf '%s\n' "${PG_OPTIONS:-}" >"$dir/options"
	tries=0
	while :; do
		port=$(free_port)
		if server_start "$dir" "$port"; then
			break
		fi
		tries=$((tries + 1))
		if [ "$tries" -ge 5 ]; then
			cat "$dir/server.log" >&2
			exit 1
		fi
	done
	echo "$port" >"$dir/port"
	url "$dir"
	;;
url)
	url "${2:?usage: $0 url DIR}"
	;;
stop)
	dir=${2:?usage: $0 stop DIR}
	if [ -d "$dir/data" ]; then
		as_owner "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
	;;
down)
	server_stop "${2:?usage: $0 down DIR MODE}" "${3:?usage: $0 down DIR MODE}"
	;;
up)
	server_up "${2:?usage: $0 up DIR}"
	;;
restart)
	server_stop "${2:?usage: $0 restart DIR MODE}" "${3:?usage: $0 restart DIR MODE}"
	server_up "$2"
	;;
*)
	echo "usage: $0 start [DIR] | url DIR | stop DIR | down DIR MODE | up DIR | restart DIR MODE" >&2
	exit 2
	;;
esac
