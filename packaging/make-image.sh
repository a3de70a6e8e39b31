#!/usr/bin/env bash
# make-image.sh DEB OUT_DIR - the appliance image (issue 19): Debian 12 with
# the scrapyd package installed and its sockets enabled, as a root file
# system OUT_DIR/rootfs and a tarball OUT_DIR/scrapyd-appliance.tar.zst.
# Run as root (`make image`).
#
# The base is the systemd lab's image (packaging/systemd-lab.sh image-dir:
# mmdebstrap of bookworm with systemd, dbus, python3-scrapy and the
# package's other dependencies, cached), so the image is built from the
# Debian mirror alone and boots where the lab boots: `LAB_ROOT=OUT_DIR/rootfs
# packaging/systemd-lab.sh start` (systemd-nspawn). The package is installed
# with apt inside, so its postinst makes the user scrapy, the directories and
# the enable links; nothing is started at build time, and at first boot the
# sockets listen and the machine gets a fresh machine-id. There is no kernel
# or boot loader: see README, "The appliance image", for a VM or a cloud.
set -Eeuo pipefail
deb=$(readlink -f "${1:?usage: $0 DEB OUT_DIR}")
out=${2:?usage: $0 DEB OUT_DIR}
here=$(dirname "$(readlink -f "$0")")
# The lab image test-deb.sh uses: one image, built once.
export LAB_EXTRA_PACKAGES=${LAB_EXTRA_PACKAGES:-adduser logrotate python3-venv python3-pip python3-setuptools}
[[ $(id -u) == 0 ]] || { echo "make-image.sh: run as root" >&2; exit 1; }

base=$(bash "$here/systemd-lab.sh" image-dir)
root=$out/rootfs
rm -rf "$root" "$root.tmp"
mkdir -p "$out"
cp -a --reflink=auto "$base" "$root.tmp"
t=$root.tmp

# What the lab added for tests goes; an appliance names itself and keeps
# Debian's daily apt runs.
rm -f "$t/etc/systemd-lab-image" "$t/etc/systemd/system/apt-daily.timer" "$t/etc/systemd/system/apt-daily-upgrade.timer"
echo scrapyd >"$t/etc/hostname"
: >"$t/etc/machine-id" # made at first boot (systemd: first-boot semantics)
# A VM or cloud instance gets its address by DHCP (systemd-networkd); in
# systemd-nspawn with a private network there is only loopback.
mkdir -p "$t/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' >"$t/etc/systemd/network/80-dhcp.network"
ln -sfn /lib/systemd/system/systemd-networkd.service "$t/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"

# The package, with dpkg: the lab image holds every dependency (a missing
# one fails here); the maintainer scripts run in the chroot (no systemd
# there: they enable, and start nothing).
cp "$deb" "$t/tmp/scrapyd.deb"
mount -t proc proc "$t/proc"
trap 'umount "$t/proc" 2>/dev/null || true' EXIT
chroot "$t" env DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/scrapyd.deb >"$out/install.log" 2>&1 \
	|| { tail -n 30 "$out/install.log" >&2; exit 1; }
umount "$t/proc"
trap - EXIT
rm -f "$t/tmp/scrapyd.deb"
chroot "$t" apt-get clean
for link in sockets.target.wants/scrapyd.socket sockets.target.wants/scrapyd-wake.socket multi-user.target.wants/scrapyd.service; do
	[[ -L $t/etc/systemd/system/$link ]] || { echo "make-image.sh: $link is not enabled" >&2; exit 1; }
done
mv "$t" "$root"

tar --zstd --numeric-owner --xattrs --acls -C "$root" -cf "$out/scrapyd-appliance.tar.zst" .
echo "image: $root ($(du -sh "$root" | cut -f1)), $out/scrapyd-appliance.tar.zst ($(du -h "$out/scrapyd-appliance.tar.zst" | cut -f1))"
