package runas

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestLookupRefusesRoot(t *testing.T) {
	if _, err := Lookup("root", ""); !errors.Is(err, ErrRoot) {
		t.Fatalf("Lookup(root) = %v, want ErrRoot", err)
	}
	if _, err := Lookup("nobody", "root"); !errors.Is(err, ErrRoot) {
		t.Fatalf("Lookup(nobody, root) = %v, want ErrRoot", err)
	}
	if _, err := Lookup("no-such-user-here", ""); err == nil {
		t.Fatal("Lookup of a missing user succeeded")
	}
}

func TestApply(t *testing.T) {
	u, err := Lookup("nobody", "")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	cmd := exec.Command("id", "-u")
	u.Apply(cmd)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := os.Geteuid()
	if want == 0 {
		want = int(u.UID)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(want) {
		t.Fatalf("child runs as uid %s, want %d", got, want)
	}
}
