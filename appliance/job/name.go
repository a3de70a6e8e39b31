package job

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen bounds every name that becomes a path component or an argument.
// 200 bytes leaves room for ".log"/".egg" suffixes within NAME_MAX (255).
const MaxNameLen = 200

// ErrUnsafeName is wrapped by every name check failure.
var ErrUnsafeName = errors.New("unsafe name")

// CheckName refuses a name that could escape its directory or confuse a
// command line: empty, too long, not UTF-8, `.` or `..`, a path separator,
// a NUL or other control character, or a leading `-` (it would read as an
// option to Scrapy). Scrapyd only checked for traversal, and a job id with
// `../` leaked a process slot (reference transcript A111).
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrUnsafeName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrUnsafeName, MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not valid UTF-8", ErrUnsafeName)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q is a directory reference", ErrUnsafeName, name)
	case strings.HasPrefix(name, "-"):
		return fmt.Errorf("%w: starts with '-'", ErrUnsafeName)
	}
	for _, r := range name {
		if r == '/' || r == '\\' {
			return fmt.Errorf("%w: contains a path separator", ErrUnsafeName)
		}
		if unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("%w: contains a control character", ErrUnsafeName)
		}
	}
	return nil
}
