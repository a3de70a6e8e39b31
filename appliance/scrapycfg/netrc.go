package scrapycfg

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// NetrcPath is where credentials are looked up: $NETRC when set (as curl
// does), else ~/.netrc (as Python's netrc module does).
func NetrcPath() string {
	if p := os.Getenv("NETRC"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".netrc")
}

// Netrc holds the machine entries of a .netrc file.
type Netrc struct {
	machines map[string]login
	def      *login
}

type login struct{ user, password string }

// ReadNetrc parses a .netrc file. A missing file gives an empty Netrc, so
// callers need not care whether the user has one.
func ReadNetrc(path string) (*Netrc, error) {
	n := &Netrc{machines: map[string]login{}}
	if path == "" {
		return n, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return n, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read netrc: %w", err)
	}
	if err := n.parse(string(data)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func (n *Netrc) parse(text string) error {
	toks := netrcTokens(text)
	var cur *login
	var curName string
	commit := func() {
		if cur == nil {
			return
		}
		if curName == "" {
			n.def = cur
		} else if _, seen := n.machines[curName]; !seen {
			// The first entry for a host wins, as in Python's netrc.
			n.machines[curName] = *cur
		}
		cur = nil
	}
	for i := 0; i < len(toks); i++ {
		next := func() (string, error) {
			if i+1 >= len(toks) {
				return "", fmt.Errorf("%q needs a value", toks[i])
			}
			i++
			return toks[i], nil
		}
		switch toks[i] {
		case "machine":
			commit()
			name, err := next()
			if err != nil {
				return err
			}
			cur, curName = &login{}, name
		case "default":
			commit()
			cur, curName = &login{}, ""
		case "login", "password", "account":
			key := toks[i]
			v, err := next()
			if err != nil {
				return err
			}
			if cur == nil {
				return fmt.Errorf("%q outside a machine entry", key)
			}
			switch key {
			case "login":
				cur.user = v
			case "password":
				cur.password = v
			}
		case "macdef":
			// Macros are for ftp; the tokenizer already dropped their bodies.
			commit()
			if _, err := next(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected token %q", toks[i])
		}
	}
	commit()
	return nil
}

// netrcTokens splits a .netrc into tokens: whitespace-separated, "quoted"
// with backslash escapes, # comments to the end of the line, and a macdef's
// body (up to the next blank line) skipped.
func netrcTokens(text string) []string {
	var toks []string
	lines := strings.Split(text, "\n")
	inMacro := false
	for _, line := range lines {
		if inMacro {
			if strings.TrimSpace(line) == "" {
				inMacro = false
			}
			continue
		}
		for rest := line; ; {
			rest = strings.TrimLeft(rest, " \t\r")
			if rest == "" || rest[0] == '#' {
				break
			}
			var tok string
			if rest[0] == '"' {
				var b strings.Builder
				j := 1
				for ; j < len(rest) && rest[j] != '"'; j++ {
					if rest[j] == '\\' && j+1 < len(rest) {
						j++
					}
					b.WriteByte(rest[j])
				}
				tok, rest = b.String(), rest[min(j+1, len(rest)):]
			} else {
				end := strings.IndexAny(rest, " \t\r")
				if end < 0 {
					end = len(rest)
				}
				tok, rest = rest[:end], rest[end:]
			}
			toks = append(toks, tok)
			if len(toks) >= 2 && toks[len(toks)-2] == "macdef" {
				inMacro = true
				break
			}
		}
	}
	return toks
}

// Lookup returns the credentials for host, or the default entry's.
func (n *Netrc) Lookup(host string) (user, password string, ok bool) {
	if l, found := n.machines[host]; found {
		return l.user, l.password, true
	}
	if n.def != nil {
		return n.def.user, n.def.password, true
	}
	return "", "", false
}

// WithNetrc fills in the target's credentials from n when the target has no
// username, as scrapyd-deploy does; the host is taken from the target's URL.
func (t Target) WithNetrc(n *Netrc) Target {
	if t.Username != "" || n == nil {
		return t
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return t
	}
	if user, pass, ok := n.Lookup(u.Hostname()); ok {
		t.Username, t.Password = user, pass
	}
	return t
}
