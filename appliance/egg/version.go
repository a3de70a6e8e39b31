package egg

import (
	"regexp"
	"sort"
	"strings"
)

var unsafeVersionChars = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// Sanitize is Scrapyd's file stem for a version: every character outside
// [A-Za-z0-9_-] becomes "_" (so "1.0" is stored as 1_0.egg).
func Sanitize(version string) string { return unsafeVersionChars.ReplaceAllString(version, "_") }

// Compare orders versions the way the seed document promises ("r10 compares
// greater to r9", like distutils' LooseVersion) without LooseVersion's crash
// on mixed schemes (Scrapyd issues #212, #281): versions split into runs of
// digits and of letters; digit runs compare by value, letter runs as text, a
// number sorts before a word, and a shorter prefix first. Ties (such as "1.0"
// and "1_0") fall back to plain text, so the order is total.
func Compare(a, b string) int {
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if c := comparePart(pa[i], pb[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(pa) < len(pb):
		return -1
	case len(pa) > len(pb):
		return 1
	}
	return strings.Compare(a, b)
}

// Sort orders versions oldest first; the last is the latest.
func Sort(versions []string) {
	sort.SliceStable(versions, func(i, j int) bool { return Compare(versions[i], versions[j]) < 0 })
}

func split(v string) []string {
	var parts []string
	start, kind := -1, 0 // kind: 1 digits, 2 other
	for i, r := range v {
		k := 2
		switch {
		case r >= '0' && r <= '9':
			k = 1
		case r == '.' || r == '-' || r == '_' || r == '+' || r == ' ':
			k = 0
		}
		if k != kind || k == 0 {
			if start >= 0 {
				parts = append(parts, v[start:i])
			}
			start = -1
			if k != 0 {
				start = i
			}
			kind = k
		}
	}
	if start >= 0 {
		parts = append(parts, v[start:])
	}
	return parts
}

func isDigits(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

func comparePart(a, b string) int {
	da, db := isDigits(a), isDigits(b)
	switch {
	case da && db:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	case da:
		return -1
	case db:
		return 1
	}
	return strings.Compare(a, b)
}
