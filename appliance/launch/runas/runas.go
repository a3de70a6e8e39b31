// Package runas drops root for the processes the daemon starts itself. On the
// Debian appliance the daemon runs as root (only root may start system
// transient units on systemd 252), yet nothing it runs on a user's behalf
// (`scrapy list`, exec-launched crawls, crawl units) may run as root: the
// code in an uploaded egg is untrusted.
package runas

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// ErrRoot is returned by Lookup for a user or group that is root: running
// uploaded eggs as root would hand the machine to whoever can deploy.
var ErrRoot = errors.New("runas: refusing to run crawls as root")

// User is the identity crawls and spider listings run as.
type User struct {
	Name   string // user name, as given to systemd's User=
	Group  string // group name, as given to systemd's Group=
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	Home   string
}

// Lookup resolves name and group (empty: the user's primary group) in the
// system's user database. It fails early, at config load, for a missing user
// and for root (ErrRoot).
func Lookup(name, group string) (User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return User{}, fmt.Errorf("runas: user %q: %w", name, err)
	}
	var g *user.Group
	if group == "" {
		g, err = user.LookupGroupId(u.Gid)
	} else {
		g, err = user.LookupGroup(group)
	}
	if err != nil {
		return User{}, fmt.Errorf("runas: group of user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("runas: user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("runas: group %q: gid %q: %w", g.Name, g.Gid, err)
	}
	if uid == 0 || gid == 0 {
		return User{}, fmt.Errorf("%w: user %q (uid %d), group %q (gid %d)", ErrRoot, name, uid, g.Name, gid)
	}
	// Supplementary groups are best effort: a user without any is fine.
	var groups []uint32
	ids, _ := u.GroupIds()
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 32); err == nil && n != 0 && n != gid {
			groups = append(groups, uint32(n))
		}
	}
	return User{Name: name, Group: g.Name, UID: uint32(uid), GID: uint32(gid), Groups: groups, Home: u.HomeDir}, nil
}

// Apply makes cmd run as u when the daemon is root. A daemon that is not root
// is already unprivileged and cannot switch users, so cmd is left alone.
// The caller still builds cmd.Env (HOME included): the environment is the
// scrapy package's job.
func (u User) Apply(cmd *exec.Cmd) {
	if os.Geteuid() != 0 {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}
