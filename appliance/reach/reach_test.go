package reach

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// nobody is a user who owns nothing here and is in no group of ours.
var nobody = User{Name: "nobody", UID: 65534, GID: 65534}

// tree makes a directory every user may enter, in the system's temporary
// directory (t.TempDir's parent is private).
func tree(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "reach-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700); os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func denied(t *testing.T, err error) *Denied {
	t.Helper()
	var d *Denied
	if !errors.As(err, &d) {
		t.Fatalf("err = %v, want *Denied", err)
	}
	return d
}

func TestPrivateDirectoryOnTheWay(t *testing.T) {
	root := tree(t)
	private := filepath.Join(root, "tmp.abc")
	egg := filepath.Join(private, "eggs", "p", "1.egg")
	os.MkdirAll(filepath.Dir(egg), 0o755)
	os.WriteFile(egg, nil, 0o644)
	os.Chmod(private, 0o700)
	d := denied(t, Check(nobody, "the egg", egg, Read))
	if d.Stop != private || d.Mode.Perm() != 0o700 || d.Fix != "chmod o+x "+private {
		t.Errorf("got %+v", d)
	}
	want := `crawl user "nobody" cannot reach the egg ` + egg + ` at ` + private + ` (owner ` + d.Owner + `, mode 0700): run ` +
		"`chmod o+x " + private + "`, or move the data where nobody can reach it"
	if d.Error() != want {
		t.Errorf("message:\n got  %s\n want %s", d.Error(), want)
	}
	os.Chmod(private, 0o711)
	if err := Check(nobody, "the egg", egg, Read); err != nil {
		t.Errorf("after chmod o+x: %v", err)
	}
	os.Chmod(egg, 0o600)
	if d := denied(t, Check(nobody, "the egg", egg, Read)); d.Stop != egg || d.Fix != "chmod o+r "+egg {
		t.Errorf("unreadable egg: %+v", d)
	}
}

func TestMissingRestWillBeCreated(t *testing.T) {
	root := tree(t)
	if err := Check(nobody, "logs_dir", filepath.Join(root, "not", "yet"), Write|Exec); err != nil {
		t.Errorf("a path the daemon will create: %v", err)
	}
	// The nearest existing directory is still where the user must pass.
	os.Chmod(root, 0o750)
	if d := denied(t, Check(nobody, "logs_dir", filepath.Join(root, "not", "yet"), Exec)); d.Stop != root {
		t.Errorf("got %+v", d)
	}
}

// TestLinksAreFollowed: python3 is a link; the directories on the way to
// its target count too.
func TestLinksAreFollowed(t *testing.T) {
	root := tree(t)
	hidden := filepath.Join(root, "venv")
	os.MkdirAll(filepath.Join(hidden, "bin"), 0o755)
	os.WriteFile(filepath.Join(hidden, "bin", "python3.11"), nil, 0o755)
	os.Chmod(hidden, 0o700)
	link := filepath.Join(root, "python3")
	os.Symlink("venv/bin/python3.11", link)
	if d := denied(t, Check(nobody, "python", link, Exec)); d.Stop != hidden || d.Path != filepath.Join(hidden, "bin", "python3.11") {
		t.Errorf("got %+v", d)
	}
	loop := filepath.Join(root, "loop")
	os.Symlink("loop", loop)
	if err := Check(nobody, "python", loop, Exec); err == nil || errors.As(err, new(*Denied)) {
		t.Errorf("a link loop: %v", err)
	}
}

// TestOwnerClassOnly: the kernel applies the owner's bits to the owner
// even when "other" would allow more.
func TestOwnerClassOnly(t *testing.T) {
	root := tree(t)
	dir := filepath.Join(root, "d")
	os.Mkdir(dir, 0o075)
	me := User{Name: "me", UID: uint32(os.Getuid()), GID: 65534}
	if d := denied(t, Check(me, "crawl_dir", dir, Exec)); d.Fix != "chmod u+x "+dir {
		t.Errorf("got %+v", d)
	}
	if err := Check(nobody, "crawl_dir", dir, Exec); err != nil {
		t.Errorf("other may enter: %v", err)
	}
}

// TestWritableIsTheUsers: where the crawl writes, the fix gives the
// directory to the crawl user rather than to everyone.
func TestWritableIsTheUsers(t *testing.T) {
	root := tree(t)
	dir := filepath.Join(root, "logs", "p", "s")
	os.MkdirAll(dir, 0o755)
	if d := denied(t, Check(nobody, "a per-spider directory", dir, Write|Exec)); d.Stop != dir || d.Fix != "chown nobody: "+dir {
		t.Errorf("got %+v", d)
	}
	if got := shellQuote("/x y/it's"); got != `'/x y/it'\''s'` {
		t.Errorf("quoting: %s", got)
	}
}
