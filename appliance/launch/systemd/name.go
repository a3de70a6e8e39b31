package systemd

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

const (
	unitPrefix = "scrapyd-crawl-"
	unitSuffix = ".service"
	// unitNameMax is systemd's UNIT_NAME_MAX (256) less the terminating NUL.
	unitNameMax = 255
	// hashedMark starts the escaped part of a hashed name. An escaped job id
	// never starts with '-' (escape turns it into \x2d), so hashed and
	// escaped names cannot collide.
	hashedMark = "-"
)

// UnitName is the name of the unit that runs job: "scrapyd-crawl-" + the job
// id escaped as `systemd-escape` does + ".service". A job id whose escaped
// form would make the name longer than systemd allows (Scrapyd accepts
// user-chosen job ids of up to 200 bytes of UTF-8) is named
// "scrapyd-crawl--" + the hex SHA-256 of the id instead; the job id is then
// only in the unit's Description.
func UnitName(job string) string {
	name := unitPrefix + escape(job) + unitSuffix
	if len(name) <= unitNameMax {
		return name
	}
	sum := sha256.Sum256([]byte(job))
	return unitPrefix + hashedMark + hex.EncodeToString(sum[:]) + unitSuffix
}

// JobID returns the job id a unit was named from, false when unit is not a
// crawl unit or carries a hashed name.
func JobID(unit string) (string, bool) {
	s, ok := strings.CutPrefix(unit, unitPrefix)
	if !ok {
		return "", false
	}
	s, ok = strings.CutSuffix(s, unitSuffix)
	if !ok || s == "" || strings.HasPrefix(s, hashedMark) {
		return "", false
	}
	return unescape(s)
}

// escape is systemd's unit_name_escape (`systemd-escape` without --path):
// '/' becomes '-'; '-', '\', a leading '.' and every byte outside
// [A-Za-z0-9:_.] become \xNN.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c == '.' && i == 0, !validChar(c):
			b.WriteString(`\x`)
			b.WriteString(hex.EncodeToString([]byte{c}))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescape undoes escape; false when s is not escape's output.
func unescape(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-':
			b.WriteByte('/')
		case c == '\\':
			if i+4 > len(s) || s[i+1] != 'x' {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				return "", false
			}
			b.WriteByte(byte(n))
			i += 3
		case validChar(c):
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	return b.String(), true
}

func validChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == ':' || c == '_' || c == '.'
}
