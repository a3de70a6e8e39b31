package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// entry is one option as read from one file, with where it came from, so that
// errors and `scrapyd config show` can name the file and line.
type entry struct {
	section, key, value string
	source              Source
}

// Source says where an effective value came from.
type Source struct {
	File string // a path, "(built-in)", "(default, why)", "(environment SCRAPYD_X)" or "(flag --x)"
	Line int    // 0 when not from a file
}

func (s Source) String() string {
	if s.Line == 0 {
		return s.File
	}
	return fmt.Sprintf("%s:%d", s.File, s.Line)
}

// parseINI reads the subset of Python's ConfigParser syntax Scrapyd
// configurations use: [sections], "key = value" or "key: value", full-line
// comments with # or ;, and indented continuation lines. Keys are
// case-insensitive, as in ConfigParser. Like ConfigParser's strict mode
// (Scrapyd's), a file may not repeat a section or an option: the second
// occurrence would silently win, which hides typos in long files.
func parseINI(name string, data []byte) ([]entry, error) {
	var out []entry
	section := ""
	seen := map[string]int{} // "[section]" or "section\x00key" -> line
	once := func(key string, n int, what string) error {
		if first, dup := seen[key]; dup {
			return fmt.Errorf("%s:%d: %s already appears at line %d", name, n, what, first)
		}
		seen[key] = n
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case raw[0] == ' ' || raw[0] == '\t':
			if len(out) == 0 || out[len(out)-1].section != section {
				return nil, fmt.Errorf("%s:%d: continuation line without an option", name, n)
			}
			out[len(out)-1].value += "\n" + line
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, fmt.Errorf("%s:%d: malformed section header %q", name, n, line)
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			if err := once("["+section+"]", n, "section ["+section+"]"); err != nil {
				return nil, err
			}
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("%s:%d: expected \"option = value\", got %q", name, n, redacted(line))
		}
		if section == "" {
			return nil, fmt.Errorf("%s:%d: option outside a [section]", name, n)
		}
		key := strings.ToLower(strings.TrimSpace(line[:i]))
		if err := once(section+"\x00"+key, n, fmt.Sprintf("option %q of [%s]", key, section)); err != nil {
			return nil, err
		}
		out = append(out, entry{
			section: section,
			key:     key,
			value:   strings.TrimSpace(line[i+1:]),
			source:  Source{File: name, Line: n},
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// redacted is a malformed line as an error may quote it: errors reach the
// log and daemonstatus.json, so a mistyped "password s3cret" line shows
// its first word only.
func redacted(line string) string {
	if f := strings.Fields(line); len(f) > 1 && strings.EqualFold(strings.TrimRight(f[0], "=:"), "password") {
		return f[0] + " …"
	}
	return line
}
