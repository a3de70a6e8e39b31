package pgstore_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
)

// The password file's first line is the password; a file others may read
// is refused, and the message does not quote it.
func TestReadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	if err := os.WriteFile(f, []byte("s3cret\r\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := pgstore.ReadPasswordFile(f); err != nil || pw != "s3cret" {
		t.Fatalf("password = %q, %v", pw, err)
	}
	os.Chmod(f, 0o644)
	_, err := pgstore.ReadPasswordFile(f)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a world-readable password file: %v", err)
	}
}

// Redact leaves the password out of a URL shown in messages.
func TestRedact(t *testing.T) {
	got := pgstore.Redact("postgresql://u:s3cret@db.example:5433/jobs?sslmode=disable")
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "u@db.example:5433/jobs") {
		t.Fatalf("Redact = %q", got)
	}
}
