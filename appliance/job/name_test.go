package job

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	ok := []string{"sample", "my-project_2", "1.0", "r10", "2019-01-01T00_00_01", "spider.with.dots", "日本語", "<b>x<i>", "a b"}
	bad := []string{"", ".", "..", "../p", "p/..", "a/b", `a\b`, "a\x00b", "a\nb", "-rf", strings.Repeat("x", MaxNameLen+1), "\xff\xfe"}
	for _, n := range ok {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q) = %v, want ok", n, err)
		}
	}
	for _, n := range bad {
		if err := CheckName(n); !errors.Is(err, ErrUnsafeName) {
			t.Errorf("CheckName(%q) = %v, want ErrUnsafeName", n, err)
		}
	}
}

func TestNewIDLooksLikeScrapyds(t *testing.T) {
	re := regexp.MustCompile(`^[a-f0-9]{32}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"sample", "../p", "a/b", "..", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckName(name) != nil {
			return
		}
		// Anything accepted is one safe path component.
		if name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, "-") {
			t.Fatalf("accepted unsafe name %q", name)
		}
	})
}
