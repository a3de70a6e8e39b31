#!/usr/bin/env bash
# Project copy of the shared tools/systemd-lab.sh: `setup` also installs what
# the project's lab tests use on the host (setpriv, ss, curl), so that
# `packaging/systemd-lab.sh start` works on a fresh CI machine as root. Used
# by appliance/launch/systemd (TestLab, LAB_NAME=launch) and
# packaging/test-deb.sh (LAB_NAME=deb, LAB_NET=private).
#
# systemd-lab.sh - a throw-away Debian system container with a real systemd as
# PID 1 (plus D-Bus), booted with systemd-nspawn, for testing socket
# activation, transient units (systemd-run / StartTransientUnit) and
# `apt install ./pkg.deb` flows on hosts whose own PID 1 is NOT systemd
# (Firecracker VMs, CI sandboxes, ...). On hosts where systemd IS PID 1 the
# container is registered with systemd-machined in the usual way instead (that
# path was not exercised on the lab machine, whose PID 1 is not systemd).
#
# Never boots systemd on the host's own root filesystem: the container gets its
# own rootfs, mount/pid/uts/ipc/cgroup namespaces, read-only /proc/sys and /sys.
#
# Commands (run as root):
#   setup                 install host tools from apt (only what is missing)
#   build [--force]       build or reuse the cached rootfs image
#   image-dir             build or reuse the image, print its directory (a base
#                         for other images: packaging/make-image.sh)
#   start                 build/reuse the image, boot it in the background, wait
#                         until `systemctl is-system-running` says running/degraded
#   status                is it running? leader pid, system state, image
#                         (exit status 3 when not running)
#   exec [-e K=V]... [--] CMD...   run CMD inside (root, clean env, stdin/stdout
#                         passed through; exit status is CMD's). Entered with
#                         nsenter, capability bounding set cut down to that of
#                         the container's PID 1 (no CAP_NET_ADMIN on the host net)
#   shell                 interactive bash inside
#   run [--] CMD...       run CMD inside as a transient service
#                         (systemd-run --pipe --wait --collect), i.e. unit context
#   cp HOST_SRC CT_DEST   copy a host file/dir into the container (CT_DEST ending
#                         in / or an existing dir: keep the base name)
#   cp-out CT_SRC HOST_DEST   copy a file/dir out of the container
#   netns [--] CMD...     run a HOST command in the container's network namespace
#                         (e.g. curl when LAB_NET=private)
#   logs [N]              last N lines of the container console (boot messages)
#   stop                  clean poweroff (SIGRTMIN+4 to the container's PID 1),
#                         escalate after LAB_STOP_TIMEOUT, remove leftovers
#   clean [--all]         stop; remove the persistent machine dir (LAB_VOLATILE=no);
#                         --all also removes all images and cached tarballs
#   selftest              end-to-end check: transient unit, scrapy crawl as a
#                         transient unit, and a dh_installsystemd-style .deb with a
#                         socket-activated daemon: apt install ./x.deb -> socket
#                         enabled+listening -> curl inside and from the host ->
#                         apt purge. Starts the lab if needed (and stops it again).
#
# Settings (environment):
#   LAB_NAME=lab              machine name = hostname (several labs can run at once)
#   LAB_DIR=/var/lib/systemd-lab   images/, machines/, run/ live here
#   LAB_CACHE_DIR=$LAB_DIR/cache   rootfs tarballs (<suite>-<hash>.tar.zst); cache
#                             this directory in CI
#   LAB_SUITE=bookworm        Debian suite of the container (trixie works too)
#   LAB_MIRROR=<the host's Debian mirror>      read from the host's apt sources
#   LAB_SECURITY_MIRROR=<the host's security mirror>
#   LAB_PACKAGES="systemd systemd-sysv dbus libpam-systemd curl ca-certificates
#                 iproute2 procps less python3-scrapy"
#   LAB_EXTRA_PACKAGES=""     added to LAB_PACKAGES (changes the image hash)
#   LAB_BOOTSTRAP=mmdebstrap  or debootstrap (slower)
#   LAB_NET=host              host: share the host's network namespace (a
#                             .socket on :6800 inside is :6800 on the host);
#                             private: loopback only (use `netns -- curl ...`)
#   LAB_CGROUP=unified        unified: cgroup v2 only inside (like real bookworm/
#                             trixie hosts; required for trixie); hybrid/legacy/auto
#   LAB_VOLATILE=yes          yes: the image stays pristine, every boot starts
#                             from it, changes go to a tmpfs overlay (lost at stop);
#                             no: boot a persistent copy in $LAB_DIR/machines/NAME
#   LAB_ROOT=""               boot this rootfs instead of the lab image (an
#                             image made from it: `make image`), volatile as above
#   LAB_BIND="src:dst ..."    extra nspawn --bind= (e.g. "$PWD/dist:/mnt/dist")
#   LAB_BIND_RO="src:dst ..." extra nspawn --bind-ro=
#   LAB_NSPAWN_ARGS=""        extra systemd-nspawn arguments (word-split)
#   LAB_BOOT_TIMEOUT=90  LAB_STOP_TIMEOUT=30   seconds
#   LAB_TEST_PORT=6800        port used by `selftest`
set -Eeuo pipefail

PROG=${0##*/}
SELF=$(readlink -f "$0")
IMAGE_FORMAT=2   # bump when the image customisation below changes

LAB_NAME=${LAB_NAME:-lab}
LAB_DIR=${LAB_DIR:-/var/lib/systemd-lab}
LAB_CACHE_DIR=${LAB_CACHE_DIR:-$LAB_DIR/cache}
LAB_SUITE=${LAB_SUITE:-bookworm}
# The host's own apt sources name the mirrors (deb822 .sources files or one-line
# sources.list entries): the first URI serving a "-security" suite is the
# security mirror, the first other one the main mirror.
host_mirror() {  # $1 = main|security
    local want=$1
    {
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
            /^URIs:/   { uri = $2 }
            /^Suites:/ { sec = ($0 ~ /-security/) }
            /^$/       { if (uri != "") print (sec ? "security " : "main ") uri; uri = "" }
            END        { if (uri != "") print (sec ? "security " : "main ") uri }'
        grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -E 's/\[[^]]*\] //' | awk '{ print ($3 ~ /-security/ ? "security " : "main ") $2 }' || true
    } | awk -v w="$want" '$1 == w { print $2; exit }' || true
}
LAB_MIRROR=${LAB_MIRROR:-$(host_mirror main)}
LAB_SECURITY_MIRROR=${LAB_SECURITY_MIRROR:-$(host_mirror security)}
[[ -n $LAB_MIRROR ]] || { echo "systemd-lab.sh: no Debian mirror in the host's apt sources; set LAB_MIRROR" >&2; exit 1; }
[[ -n $LAB_SECURITY_MIRROR ]] || LAB_SECURITY_MIRROR=${LAB_MIRROR%/debian}/debian-security
LAB_PACKAGES=${LAB_PACKAGES:-systemd systemd-sysv dbus libpam-systemd curl ca-certificates iproute2 procps less python3-scrapy}
LAB_EXTRA_PACKAGES=${LAB_EXTRA_PACKAGES:-}
LAB_BOOTSTRAP=${LAB_BOOTSTRAP:-mmdebstrap}
LAB_NET=${LAB_NET:-host}
LAB_CGROUP=${LAB_CGROUP:-unified}
LAB_VOLATILE=${LAB_VOLATILE:-yes}
LAB_BIND=${LAB_BIND:-}
LAB_ROOT=${LAB_ROOT:-}
LAB_BIND_RO=${LAB_BIND_RO:-}
LAB_NSPAWN_ARGS=${LAB_NSPAWN_ARGS:-}
LAB_BOOT_TIMEOUT=${LAB_BOOT_TIMEOUT:-90}
LAB_STOP_TIMEOUT=${LAB_STOP_TIMEOUT:-30}
LAB_TEST_PORT=${LAB_TEST_PORT:-6800}

export LC_ALL=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

log()  { printf '%s[%s]: %s\n' "$PROG" "$LAB_NAME" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
now()  { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

[[ $LAB_NAME =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "LAB_NAME must match [a-z0-9][a-z0-9-]{0,30}"
case $LAB_NET in host|private) ;; *) die "LAB_NET must be host or private";; esac
case $LAB_CGROUP in unified|hybrid|legacy|auto) ;; *) die "LAB_CGROUP must be unified, hybrid, legacy or auto";; esac
case $LAB_VOLATILE in yes|no) ;; *) die "LAB_VOLATILE must be yes or no";; esac
case $LAB_BOOTSTRAP in mmdebstrap|debootstrap) ;; *) die "LAB_BOOTSTRAP must be mmdebstrap or debootstrap";; esac

RUN=$LAB_DIR/run/$LAB_NAME
MACHINE_DIR=$LAB_DIR/machines/$LAB_NAME

packages() { printf '%s\n' $LAB_PACKAGES $LAB_EXTRA_PACKAGES | sort -u; }
image_id() {
    local h
    h=$( { echo "$IMAGE_FORMAT $LAB_SUITE $LAB_MIRROR $LAB_SECURITY_MIRROR $LAB_BOOTSTRAP"; packages; } | sha256sum | cut -c1-12)
    echo "$LAB_SUITE-$h"
}
IMAGE_ID=$(image_id)
IMAGE_DIR=$LAB_DIR/images/$IMAGE_ID
TARBALL=$LAB_CACHE_DIR/$IMAGE_ID.tar.zst

need_root() { [[ $(id -u) == 0 ]] || die "run as root"; }
host_has_systemd() { [[ -d /run/systemd/system ]]; }   # sd_booted()

# cgroup hierarchies the nspawn supervisor is moved into when the host's PID 1
# is not systemd (otherwise nspawn --keep-unit would use /payload + /supervisor
# at the hierarchy root, shared by every container).
cg_dirs() {  # [$1 = name, default $LAB_NAME]
    host_has_systemd && return 0
    local fs n=${1:-$LAB_NAME}
    fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null || true)
    if [[ $fs == cgroup2fs ]]; then
        echo "/sys/fs/cgroup/systemd-lab/$n"
        return 0
    fi
    [[ -d /sys/fs/cgroup/unified && $(stat -fc %T /sys/fs/cgroup/unified) == cgroup2fs ]] \
        && echo "/sys/fs/cgroup/unified/systemd-lab/$n"
    [[ -d /sys/fs/cgroup/systemd && $(stat -fc %T /sys/fs/cgroup/systemd) == cgroupfs ]] \
        && echo "/sys/fs/cgroup/systemd/systemd-lab/$n"
    return 0
}

rm_cgroups() {  # [$1 = name]: remove our (empty) cgroups; rmdir never forces
    local d
    for d in $(cg_dirs "${1:-}"); do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        rmdir "$(dirname "$d")" 2>/dev/null || true
    done
    return 0
}

# Run a command in a rootfs with a non-booting systemd-nspawn (used to finish a
# debootstrap build). Private /dev, /proc, /sys; host network (for apt).
nspawn_run() {  # $1 = rootfs, rest = command
    local r=$1 cg=build-$$ extra=() rc=0 d; shift
    if ! host_has_systemd; then
        extra=(--register=no --keep-unit)
        for d in $(cg_dirs "$cg"); do mkdir -p "$d"; done
    fi
    bash "$SELF" __launch_fg "$cg" "${extra[@]}" --quiet --as-pid2 --pipe \
        --directory="$r" --link-journal=no --setenv=DEBIAN_FRONTEND=noninteractive -- "$@" || rc=$?
    rm_cgroups "$cg"
    return $rc
}

# ---------------------------------------------------------------- setup/build
cmd_setup() {
    need_root
    local need=()
    command -v systemd-nspawn >/dev/null || need+=(systemd-container)
    command -v nsenter >/dev/null || need+=(util-linux)
    command -v zstd >/dev/null || need+=(zstd)
    command -v flock >/dev/null || need+=(util-linux)
    command -v setpriv >/dev/null || need+=(util-linux)
    command -v ss >/dev/null || need+=(iproute2)
    command -v curl >/dev/null || need+=(curl)
    command -v dpkg-deb >/dev/null || need+=(dpkg)
    command -v "$LAB_BOOTSTRAP" >/dev/null || need+=("$LAB_BOOTSTRAP")
    [[ -e /usr/share/keyrings/debian-archive-keyring.gpg ]] || need+=(debian-archive-keyring)
    if ((${#need[@]})); then
        log "installing host packages: ${need[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
}

bootstrap_into() {   # $1 = empty target dir
    local t=$1 pkgs suites=()
    pkgs=$(packages | paste -sd, -)
    case $LAB_SUITE in
        sid|unstable|experimental) suites=("deb $LAB_MIRROR $LAB_SUITE main") ;;
        *) suites=("deb $LAB_MIRROR $LAB_SUITE main"
                   "deb $LAB_MIRROR $LAB_SUITE-updates main"
                   "deb $LAB_SECURITY_MIRROR $LAB_SUITE-security main") ;;
    esac
    if [[ $LAB_BOOTSTRAP == mmdebstrap ]]; then
        # --skip=cleanup/apt/lists keeps the package lists, so that
        # `apt install ./x.deb` can pull missing dependencies without an update.
        mmdebstrap --variant=apt --skip=cleanup/apt/lists --include="$pkgs" \
            "$LAB_SUITE" "$t" "${suites[@]}" >"$t.log" 2>&1 \
            || { tail -n 30 "$t.log" >&2; die "mmdebstrap failed (log: $t.log)"; }
    else
        # debootstrap's own resolver cannot handle virtual packages (python3-scrapy
        # needs python3-cffi-backend-api-*), so only the init system is
        # debootstrapped and the rest is installed with apt inside nspawn.
        debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus \
            "$LAB_SUITE" "$t" "$LAB_MIRROR" >"$t.log" 2>&1 \
            || { tail -n 30 "$t.log" >&2; die "debootstrap failed (log: $t.log)"; }
        printf '%s\n' "${suites[@]}" >"$t/etc/apt/sources.list"
        # shellcheck disable=SC2046
        nspawn_run "$t" sh -ec 'apt-get update -q; apt-get install -y -q --no-install-recommends "$@"; apt-get clean' \
            sh $(packages) >>"$t.log" 2>&1 \
            || { tail -n 30 "$t.log" >&2; die "apt-get install in the new rootfs failed (log: $t.log)"; }
    fi
    rm -f "$t.log"
}

customize_image() {   # $1 = rootfs
    local t=$1 u
    rm -f "$t/etc/hostname"                 # hostname = machine name (nspawn -M)
    : >"$t/etc/machine-id"                  # fresh (transient) machine id per boot
    # no background apt runs that could hold the dpkg lock during tests
    for u in apt-daily.timer apt-daily-upgrade.timer; do
        ln -sfn /dev/null "$t/etc/systemd/system/$u"
    done
    echo "$IMAGE_ID" >"$t/etc/systemd-lab-image"
}

images_in_use() {   # prints names of running labs using image $1
    local d n
    for d in "$LAB_DIR"/run/*/; do
        [[ -f $d/image ]] || continue
        n=$(basename "$d")
        if [[ $(cat "$d/image") == "$1" ]] && LAB_NAME=$n bash "$SELF" __alive; then echo "$n"; fi
    done
}

# shellcheck disable=SC2120
cmd_build() {
    need_root
    local force=0
    [[ ${1:-} == --force ]] && force=1
    mkdir -p "$LAB_DIR/images" "$LAB_CACHE_DIR"
    exec 8>"$LAB_DIR/.build.lock"
    flock -w 1800 8 || die "timed out waiting for another build"
    if ((force)); then
        [[ -z $(images_in_use "$IMAGE_ID") ]] || die "image $IMAGE_ID is used by a running lab; stop it first"
        rm -rf "$IMAGE_DIR" "$TARBALL"
    fi
    if [[ -f $IMAGE_DIR/etc/systemd-lab-image ]]; then
        log "image $IMAGE_ID ready ($IMAGE_DIR)"
        exec 8>&-; return 0
    fi
    local t0 tmp=$IMAGE_DIR.tmp.$$
    t0=$(now)
    rm -rf "$tmp"; mkdir -p "$tmp"
    if [[ -f $TARBALL ]]; then
        log "extracting cached image $TARBALL"
        zstd -dcq "$TARBALL" | tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$tmp" -xf -
    else
        log "bootstrapping $LAB_SUITE with $LAB_BOOTSTRAP (packages: $(packages | paste -sd' ' -))"
        rmdir "$tmp"
        bootstrap_into "$tmp"
        customize_image "$tmp"
        log "writing cache tarball $TARBALL"
        tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$tmp" -cf - . \
            | zstd -q -T0 -o "$TARBALL.tmp.$$" && mv -f "$TARBALL.tmp.$$" "$TARBALL"
    fi
    mv "$tmp" "$IMAGE_DIR"
    log "image $IMAGE_ID ready in $(since "$t0")s ($(du -sh "$IMAGE_DIR" | cut -f1), tarball $(du -h "$TARBALL" | cut -f1))"
    exec 8>&-
}

# ---------------------------------------------------------------- lifecycle
nspawn_pid() {   # prints the supervisor pid if our nspawn is alive
    local p
    [[ -f $RUN/nspawn.pid ]] || return 1
    p=$(cat "$RUN/nspawn.pid")
    [[ -n $p && -r /proc/$p/cmdline ]] || return 1
    tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qx -- "--machine=$LAB_NAME" || return 1
    echo "$p"
}

find_leader() {  # $1 = nspawn pid; prints the container's PID 1 (host pid)
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do
        if [[ $(awk '/^NSpid:/{print $NF}' "/proc/$c/status" 2>/dev/null) == 1 ]]; then
            echo "$c"; return 0
        fi
    done
    return 1
}

leader() {
    local n l
    n=$(nspawn_pid) || return 1
    if [[ -f $RUN/leader.pid ]]; then
        l=$(cat "$RUN/leader.pid")
        [[ $(awk '/^PPid:/{print $2}' "/proc/$l/status" 2>/dev/null) == "$n" ]] && { echo "$l"; return 0; }
    fi
    find_leader "$n"
}

running_net() {  # network mode the running lab was started with
    cat "$RUN/net" 2>/dev/null || echo "$LAB_NET"
}

ct_bounding_set() {  # $1 = leader pid -> setpriv spec of its capability bounding set
    local hex mask i out=-all
    hex=$(awk '/^CapBnd:/{print $2}' "/proc/$1/status")
    mask=$((16#$hex))
    for ((i = 0; i < 63; i++)); do (((mask >> i) & 1)) && out+=",+cap_$i"; done
    echo "$out"
}

# Run a command inside, minimal env. nsenter alone would keep the HOST's full
# capability set (e.g. CAP_NET_ADMIN on the shared host network!), so the
# bounding set is cut down to that of the container's PID 1 first.
in_ct() {
    local l
    l=$(leader) || die "lab '$LAB_NAME' is not running (start it with: $PROG start)"
    nsenter --target "$l" --all --root --wd -- \
        /usr/bin/setpriv --bounding-set="$(ct_bounding_set "$l")" -- /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        DEBIAN_FRONTEND=noninteractive "$@"
}

cmd___launch() {  # internal: runs under setsid; joins our cgroups, execs nspawn
    local pidfile=$1 d; shift
    for d in $(cg_dirs); do echo $$ >"$d/cgroup.procs"; done
    echo $$ >"$pidfile"
    exec systemd-nspawn "$@"
}

cmd___launch_fg() {  # internal: join cgroup $1, exec a foreground nspawn
    local d cg=$1; shift
    for d in $(cg_dirs "$cg"); do echo $$ >"$d/cgroup.procs"; done
    exec systemd-nspawn "$@"
}

cmd___alive() { nspawn_pid >/dev/null; }

cmd_start() {
    need_root
    if nspawn_pid >/dev/null; then
        log "already running (leader pid $(leader || echo '?')); '$PROG stop' first to restart"
        return 0
    fi
    cmd_setup
    [[ -n $LAB_ROOT ]] || cmd_build
    cleanup_leftovers
    local root t0 n="" l="" st args=() d i
    t0=$(now)
    if [[ -n $LAB_ROOT ]]; then
        [[ -x $LAB_ROOT/sbin/init || -L $LAB_ROOT/sbin/init ]] || die "LAB_ROOT=$LAB_ROOT has no /sbin/init"
        root=$(readlink -f "$LAB_ROOT")
        [[ $LAB_VOLATILE == yes ]] && args+=(--volatile=overlay)
    elif [[ $LAB_VOLATILE == yes ]]; then
        root=$IMAGE_DIR
        args+=(--volatile=overlay)
    else
        root=$MACHINE_DIR
        if [[ ! -f $root/etc/systemd-lab-image ]]; then
            log "creating persistent machine dir $root from image $IMAGE_ID"
            rm -rf "$root.tmp"; mkdir -p "$LAB_DIR/machines"
            cp -a --reflink=auto "$IMAGE_DIR" "$root.tmp" && mv "$root.tmp" "$root"
        elif [[ $(cat "$root/etc/systemd-lab-image") != "$IMAGE_ID" ]]; then
            log "WARNING: $root was made from image $(cat "$root/etc/systemd-lab-image"), not $IMAGE_ID ('$PROG clean' resets it)"
        fi
    fi
    args=(--boot --directory="$root" --machine="$LAB_NAME" --link-journal=no
          --console=read-only --resolv-conf=auto "${args[@]}")
    [[ $LAB_NET == private ]] && args+=(--private-network)
    for d in $LAB_BIND; do args+=(--bind="$d"); done
    for d in $LAB_BIND_RO; do args+=(--bind-ro="$d"); done
    # shellcheck disable=SC2206
    args+=($LAB_NSPAWN_ARGS)
    if ! host_has_systemd; then
        # no systemd-machined / system bus on the host: don't register, don't
        # ask for a transient scope, stay in (our own) cgroup
        args+=(--register=no --keep-unit)
        for d in $(cg_dirs); do mkdir -p "$d"; done
    fi
    local envs=()
    case $LAB_CGROUP in
        unified) envs=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1) ;;
        hybrid|legacy) envs=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0) ;;
    esac
    mkdir -p "$RUN"
    rm -f "$RUN/nspawn.pid" "$RUN/leader.pid"
    echo "$IMAGE_ID" >"$RUN/image"
    echo "$LAB_NET" >"$RUN/net"
    log "booting $root (net=$LAB_NET cgroup=$LAB_CGROUP volatile=$LAB_VOLATILE)"
    env "${envs[@]}" setsid bash "$SELF" __launch "$RUN/nspawn.pid" "${args[@]}" \
        </dev/null >"$RUN/console.log" 2>&1 &
    for ((i = 0; i < 200; i++)); do
        n=$(nspawn_pid) && l=$(find_leader "$n") && break
        if ((i > 20)) && [[ -f $RUN/nspawn.pid ]] && ! kill -0 "$(cat "$RUN/nspawn.pid")" 2>/dev/null; then break; fi
        sleep 0.05
    done
    if [[ -z $l ]]; then
        tail -n 30 "$RUN/console.log" >&2 || true
        cmd_stop >/dev/null 2>&1 || true
        die "container did not start (console: $RUN/console.log)"
    fi
    echo "$l" >"$RUN/leader.pid"
    for ((i = 0; i < LAB_BOOT_TIMEOUT * 20; i++)); do
        [[ -S /proc/$l/root/run/systemd/private ]] && break
        kill -0 "$l" 2>/dev/null || break
        sleep 0.05
    done
    st=$(timeout "$LAB_BOOT_TIMEOUT" nsenter --target "$l" --all --root --wd -- \
        /bin/systemctl is-system-running --wait 2>&1) || true
    case $st in
        running) log "up in $(since "$t0")s: state=running, leader pid $l" ;;
        degraded)
            log "up in $(since "$t0")s: state=degraded, leader pid $l; failed units:"
            in_ct systemctl --failed --no-legend --plain >&2 || true ;;
        *)
            tail -n 30 "$RUN/console.log" >&2 || true
            cmd_stop >/dev/null 2>&1 || true
            die "boot did not finish (state: ${st:-none}); console: $RUN/console.log" ;;
    esac
}

cleanup_leftovers() {
    local p
    rm_cgroups
    if ! host_has_systemd; then
        p=/run/systemd/nspawn/propagate/$LAB_NAME  # nspawn refuses to rm it when /run is not tmpfs
        [[ -d $p ]] && rmdir "$p" 2>/dev/null || true
    fi
    return 0
}

wait_gone() {  # $1 pid, $2 seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    return 1
}

cmd_stop() {
    need_root
    local n l t0
    t0=$(now)
    if ! n=$(nspawn_pid); then
        log "not running"
        cleanup_leftovers
        rm -f "$RUN/nspawn.pid" "$RUN/leader.pid"
        return 0
    fi
    l=$(leader || true)
    if [[ -n $l ]]; then
        kill -s SIGRTMIN+4 "$l" 2>/dev/null || true   # systemd: start poweroff.target
    else
        kill -TERM "$n" 2>/dev/null || true
    fi
    if ! wait_gone "$n" "$LAB_STOP_TIMEOUT"; then
        log "no clean poweroff after ${LAB_STOP_TIMEOUT}s; sending SIGTERM to systemd-nspawn ($n)"
        kill -TERM "$n" 2>/dev/null || true
        if ! wait_gone "$n" 10; then
            log "sending SIGKILL to container PID 1 ($l) and systemd-nspawn ($n)"
            [[ -n $l ]] && kill -KILL "$l" 2>/dev/null || true
            kill -KILL "$n" 2>/dev/null || true
            wait_gone "$n" 5 || die "systemd-nspawn ($n) does not exit"
        fi
    fi
    sleep 0.2
    cleanup_leftovers
    rm -f "$RUN/nspawn.pid" "$RUN/leader.pid"
    [[ -f $RUN/console.log ]] && mv -f "$RUN/console.log" "$RUN/console.last.log"
    log "stopped in $(since "$t0")s"
}

cmd_status() {
    local n l st
    if ! n=$(nspawn_pid); then echo "$LAB_NAME: not running"; return 3; fi
    l=$(leader || echo "?")
    st=$(in_ct systemctl is-system-running 2>/dev/null || true)
    echo "$LAB_NAME: running; state=$st; nspawn pid $n; leader pid $l; image $(cat "$RUN/image" 2>/dev/null); net=$(running_net)"
}

cmd_exec() {
    local envs=()
    while (($#)); do
        case $1 in
            -e) envs+=("$2"); shift 2 ;;
            --) shift; break ;;
            *) break ;;
        esac
    done
    (($#)) || die "usage: $PROG exec [-e K=V]... [--] CMD..."
    in_ct "${envs[@]}" "$@"
}

cmd_shell() { in_ct /bin/bash -l; }

cmd_run() {
    [[ ${1:-} == -- ]] && shift
    (($#)) || die "usage: $PROG run [--] CMD..."
    in_ct systemd-run --quiet --pipe --wait --collect --service-type=exec \
        -p WorkingDirectory=/root "$@"
}

cmd_cp() {
    (($# == 2)) || die "usage: $PROG cp HOST_SRC CONTAINER_DEST"
    local src=$1 dst=$2
    [[ -e $src ]] || die "$src: no such file"
    if [[ -d $src ]]; then
        tar -C "$src" -cf - . | in_ct sh -ec \
            'd=$1; [ -d "$d" ] && d=${d%/}/$2; mkdir -p "$d"; tar --no-same-owner -C "$d" -xf -; echo "$d"' \
            sh "$dst" "$(basename "$src")"
    else
        in_ct sh -ec \
            'd=$1; case $d in */) d=$d$2;; esac; [ -d "$d" ] && d=$d/$2; mkdir -p "$(dirname "$d")"; cat >"$d"; chmod "$3" "$d"; echo "$d"' \
            sh "$dst" "$(basename "$src")" "$(stat -c %a "$src")" <"$src"
    fi
}

cmd_cp_out() {
    (($# == 2)) || die "usage: $PROG cp-out CONTAINER_SRC HOST_DEST"
    local src=$1 dst=$2
    if in_ct test -d "$src"; then
        mkdir -p "$dst"
        in_ct tar -C "$src" -cf - . | tar -C "$dst" -xf -
    else
        [[ -d $dst ]] && dst=$dst/$(basename "$src")
        in_ct cat "$src" >"$dst"
    fi
}

cmd_netns() {
    [[ ${1:-} == -- ]] && shift
    local l
    l=$(leader) || die "lab '$LAB_NAME' is not running"
    nsenter --target "$l" --net -- "$@"
}

cmd_logs() { tail -n "${1:-100}" "$RUN/console.log" 2>/dev/null || tail -n "${1:-100}" "$RUN/console.last.log"; }

cmd_clean() {
    need_root
    cmd_stop
    rm -rf "$MACHINE_DIR" "$MACHINE_DIR.tmp" "$RUN"
    if [[ ${1:-} == --all ]]; then
        local busy
        busy=$(for d in "$LAB_DIR"/run/*/; do [[ -d $d ]] && LAB_NAME=$(basename "$d") bash "$SELF" __alive && basename "$d"; done || true)
        [[ -z $busy ]] || die "labs still running: $busy"
        rm -rf "$LAB_DIR/images" "$LAB_CACHE_DIR" "$LAB_DIR/machines" "$LAB_DIR/run"
        log "removed all images and cached tarballs"
    fi
}

# ---------------------------------------------------------------- selftest
build_test_deb() {  # $1 = output dir; prints the .deb path
    local w=$1/pkg port=$LAB_TEST_PORT
    rm -rf "$w"; mkdir -p "$w/DEBIAN" "$w/usr/lib/labtest" "$w/lib/systemd/system"
    cat >"$w/usr/lib/labtest/server.py" <<'EOF'
#!/usr/bin/python3
# socket-activated HTTP server (sd_listen_fds protocol, no libraries)
import json, os, socket, sys
from http.server import HTTPServer, BaseHTTPRequestHandler
if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
    sys.exit("not socket-activated")
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"activated": True, "pid": os.getpid(), "uid": os.getuid(),
                           "fdnames": os.environ.get("LISTEN_FDNAMES"), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body + b"")
srv = HTTPServer(("127.0.0.1", 0), H, bind_and_activate=False)
srv.socket.close()
srv.socket = socket.socket(fileno=3)
srv.serve_forever()
EOF
    chmod 755 "$w/usr/lib/labtest/server.py"
    cat >"$w/lib/systemd/system/labtest.socket" <<EOF
[Unit]
Description=labtest socket

[Socket]
ListenStream=$port
FileDescriptorName=labtest

[Install]
WantedBy=sockets.target
EOF
    cat >"$w/lib/systemd/system/labtest.service" <<'EOF'
[Unit]
Description=labtest socket-activated daemon
Requires=labtest.socket
After=labtest.socket

[Service]
ExecStart=/usr/lib/labtest/server.py
DynamicUser=yes
EOF
    cat >"$w/DEBIAN/control" <<'EOF'
Package: labtest
Version: 1.0
Architecture: all
Maintainer: systemd-lab <lab@example.invalid>
Depends: python3, systemd
Section: net
Priority: optional
Description: systemd-lab self-test package (socket-activated HTTP daemon)
EOF
    # maintainer scripts as generated by dh_installsystemd 13.11 (bookworm) for
    # "dh_installsystemd labtest.socket; dh_installsystemd --no-enable --no-start labtest.service"
    cat >"$w/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	deb-systemd-helper unmask 'labtest.socket' >/dev/null || true
	if deb-systemd-helper --quiet was-enabled 'labtest.socket'; then
		deb-systemd-helper enable 'labtest.socket' >/dev/null || true
	else
		deb-systemd-helper update-state 'labtest.socket' >/dev/null || true
	fi
fi
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "$2" ]; then _dh_action=restart; else _dh_action=start; fi
		deb-systemd-invoke $_dh_action 'labtest.socket' >/dev/null || true
	fi
fi
EOF
    cat >"$w/DEBIAN/preinst" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ "$1" = upgrade ] && [ -d /run/systemd/system ] ; then
	deb-systemd-invoke stop 'labtest.service' >/dev/null || true
fi
EOF
    cat >"$w/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ "$1" = remove ] && [ -d /run/systemd/system ] ; then
	deb-systemd-invoke stop 'labtest.socket' >/dev/null || true
fi
EOF
    cat >"$w/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ] ; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "purge" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper purge 'labtest.socket' >/dev/null || true
	fi
fi
EOF
    chmod 755 "$w/DEBIAN/postinst" "$w/DEBIAN/preinst" "$w/DEBIAN/prerm" "$w/DEBIAN/postrm"
    dpkg-deb --root-owner-group --build "$w" "$1/labtest_1.0_all.deb" >/dev/null
    echo "$1/labtest_1.0_all.deb"
}

cmd_selftest() {
    need_root
    local started=0 fails=0 tmp deb port=$LAB_TEST_PORT t0
    t0=$(now)
    check() {  # check "description" command...
        local desc=$1; shift
        local o rc=0
        o=$("$@" 2>&1) || rc=$?
        if ((rc == 0)); then echo "PASS  $desc"; else echo "FAIL  $desc"; echo "$o" | tail -n 15 | sed 's/^/      /'; fails=$((fails + 1)); fi
        return 0
    }
    local net=$LAB_NET
    nspawn_pid >/dev/null && net=$(running_net)
    if [[ $net == host ]] && ss -Hltn "sport = :$port" | grep -q .; then
        die "port $port is already in use in the host network namespace (set LAB_TEST_PORT, or LAB_NET=private)"
    fi
    if ! nspawn_pid >/dev/null; then cmd_start; started=1; fi
    tmp=$(mktemp -d /tmp/systemd-lab-selftest.XXXXXX)
    deb=$(build_test_deb "$tmp")
    check "systemd is PID 1 and the system is running" \
        in_ct sh -c '[ "$(cat /proc/1/comm)" = systemd ] && systemctl is-system-running | grep -Eq "running|degraded"'
    check "systemd-run --unit creates a transient unit visible in systemctl status" \
        in_ct sh -c 'systemd-run --unit=selftest-sleep --collect sleep 30 && systemctl status selftest-sleep --no-pager | grep -q "Transient: yes" && systemctl stop selftest-sleep'
    check "transient unit with --wait/--pipe, User=nobody" \
        in_ct sh -c 'systemd-run --quiet --wait --pipe --collect -p User=nobody id -un | grep -qx nobody'
    if [[ $net == host ]]; then
        check "exec'd commands cannot reconfigure the host network (no CAP_NET_ADMIN)" \
            in_ct sh -c '! ip link set lo mtu "$(cat /sys/class/net/lo/mtu)" 2>/dev/null'
    fi
    check "python3-scrapy is installed" in_ct scrapy version
    check "cp a file in (into the container's /tmp tmpfs)" \
        sh -c "bash '$SELF' cp '$deb' /tmp/ && bash '$SELF' exec -- test -s /tmp/labtest_1.0_all.deb"
    check "apt install ./labtest_1.0_all.deb" \
        in_ct sh -c 'cd /tmp && apt-get install -y ./labtest_1.0_all.deb'
    check "postinst enabled + started labtest.socket (service not yet running)" \
        in_ct sh -c 'systemctl is-enabled labtest.socket && systemctl is-active labtest.socket && ! systemctl is-active labtest.service'
    check "curl inside -> socket activation (LISTEN_FDNAMES=labtest, DynamicUser)" \
        in_ct sh -c "curl -fsS http://127.0.0.1:$port/inside | tee /dev/stderr | grep -q '\"fdnames\": \"labtest\"' && systemctl is-active labtest.service"
    if [[ $net == host ]]; then
        check "curl from the host -> same daemon" sh -c "curl -fsS -m 5 http://127.0.0.1:$port/from-host | grep -q activated"
    else
        check "curl from the host (in the container netns)" \
            sh -c "bash '$SELF' netns -- curl -fsS -m 5 http://127.0.0.1:$port/from-host | grep -q activated"
    fi
    check "scrapy crawl as a transient unit (systemd-run) against the daemon" \
        in_ct sh -c "cat >/tmp/sp.py <<EOF
import scrapy, json
class S(scrapy.Spider):
    name = 's'
    start_urls = ['http://127.0.0.1:$port/crawl']
    def parse(self, r):
        yield json.loads(r.text)
EOF
systemd-run --quiet --wait --pipe --collect --unit=selftest-crawl -p WorkingDirectory=/tmp scrapy runspider /tmp/sp.py -o /tmp/items.jsonl -s LOG_LEVEL=WARNING && grep -q activated /tmp/items.jsonl"
    check "apt purge stops the socket and removes the enable symlink" \
        in_ct sh -c 'apt-get purge -y labtest && ! systemctl is-active labtest.socket && ! test -e /etc/systemd/system/sockets.target.wants/labtest.socket'
    rm -rf "$tmp"
    ((started)) && cmd_stop
    if ((fails)); then log "selftest: $fails check(s) FAILED ($(since "$t0")s)"; return 1; fi
    log "selftest: all checks passed ($(since "$t0")s)"
}

# ---------------------------------------------------------------- main
cmd=${1:-}
(($#)) && shift
case $cmd in
    setup|build|start|stop|status|exec|shell|run|cp|netns|logs|clean|selftest|__launch|__launch_fg|__alive)
        "cmd_$cmd" "$@" ;;
    image-dir) cmd_build >&2 && echo "$IMAGE_DIR" ;;
    cp-out) cmd_cp_out "$@" ;;
    ""|-h|--help|help) sed -n '2,/^set -Eeuo/p' "$SELF" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (try: $PROG help)" ;;
esac
