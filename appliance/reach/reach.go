// Package reach tells whether a user can reach a file by its Unix
// permissions: every directory on the way searchable, and the file itself
// readable, writable or executable as needed. A root daemon runs crawls as
// another user, and a directory that user cannot enter (a private
// `mktemp -d`, /root) used to surface as a Python traceback or a misleading
// exec error (issue 13); checked here, it becomes one line that names the
// path, its owner and mode, and the chmod that fixes it.
package reach

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// User is who must reach the files.
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
}

// Need is what the user must do with the last element of a path, as
// permission bits for "other" (r=4, w=2, x=1).
type Need uint32

const (
	Exec  Need = 1 // run a file, or enter a directory
	Write Need = 2
	Read  Need = 4
)

// Denied says which path stops the user, and how to let it through.
type Denied struct {
	User  string
	What  string // what the path is for ("the interpreter (python)")
	Path  string // the file the user must reach
	Stop  string // the path whose permissions deny it: Path or a directory above
	Owner string // user:group of Stop
	Mode  fs.FileMode
	Fix   string // a shell command that lets the user through
}

func (d *Denied) Error() string {
	at := ""
	if d.Stop != d.Path {
		at = " at " + d.Stop
	}
	return fmt.Sprintf("crawl user %q cannot reach %s %s%s (owner %s, mode %04o): run `%s`, or move the data where %s can reach it",
		d.User, d.What, d.Path, at, d.Owner, d.Mode.Perm(), d.Fix, d.User)
}

// Check returns a *Denied when u cannot reach path with need: each
// directory from / down must let u search it, and path itself must grant
// need. Symbolic links are followed as the kernel follows them, so the
// directories on the way to a link's target are checked too. A path, or
// the rest of it, that does not exist yet is not an error: the daemon
// creates it (as the crawl user, or 0755) before a crawl needs it. ACLs
// are not read: on Debian they are off unless set on purpose.
func Check(u User, what, path string, need Need) error {
	return check(u, what, path, need, 0)
}

// maxLinks is Linux's limit on symbolic links in one lookup (ELOOP).
const maxLinks = 40

func check(u User, what, path string, need Need, links int) error {
	path = filepath.Clean(path)
	if !filepath.IsAbs(path) {
		return fmt.Errorf("reach: %s is not absolute", path)
	}
	dirs := strings.Split(path, "/")[1:]
	cur := "/"
	for i, name := range dirs {
		if name == "" {
			continue
		}
		if err := grants(u, what, path, cur, Exec); err != nil {
			return err
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, path, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if links == maxLinks {
				return fmt.Errorf("%s %s: %w", what, path, syscall.ELOOP)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("%s %s: %w", what, path, err)
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			// The rest of the path continues from the link's target.
			return check(u, what, filepath.Join(append([]string{target}, dirs[i+1:]...)...), need, links+1)
		}
		cur = next
	}
	return grants(u, what, path, cur, need)
}

// grants checks the one permission class that applies to u on p (the
// kernel looks at no other: an owner without x is refused even if others
// have it).
func grants(u User, what, path, p string, need Need) error {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := uint32(fi.Mode().Perm())
	who, shift := "o", 0
	switch {
	case st.Uid == u.UID:
		who, shift = "u", 6
	case u.inGroup(st.Gid):
		who, shift = "g", 3
	}
	if Need((mode>>shift)&7)&need == need {
		return nil
	}
	fix := fmt.Sprintf("chmod %s+%s %s", who, letters(need), shellQuote(p))
	if need&Write != 0 {
		// Where the user writes, the directory is to be theirs: making
		// it writable by all would let every user in.
		fix = fmt.Sprintf("chown %s: %s", u.Name, shellQuote(p))
	}
	return &Denied{User: u.Name, What: what, Path: path, Stop: p, Owner: owner(st), Mode: fi.Mode(), Fix: fix}
}

func (u User) inGroup(gid uint32) bool {
	if gid == u.GID {
		return true
	}
	for _, g := range u.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

func letters(n Need) string {
	var b strings.Builder
	for _, l := range []struct {
		bit Need
		c   byte
	}{{Read, 'r'}, {Write, 'w'}, {Exec, 'x'}} {
		if n&l.bit != 0 {
			b.WriteByte(l.c)
		}
	}
	return b.String()
}

// owner is "user:group" by name, or by number when a name is unknown.
func owner(st *syscall.Stat_t) string {
	un := strconv.FormatUint(uint64(st.Uid), 10)
	if x, err := user.LookupId(un); err == nil {
		un = x.Username
	}
	gn := strconv.FormatUint(uint64(st.Gid), 10)
	if g, err := user.LookupGroupId(gn); err == nil {
		gn = g.Name
	}
	return un + ":" + gn
}

// shellQuote quotes p for a copy-pasted command when it needs it.
func shellQuote(p string) string {
	if strings.IndexFunc(p, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '+' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}
