package egg

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// allocated is how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestManyEntriesAreRefusedBounded: archive/zip keeps every directory
// entry in memory (~300 bytes for 47 bytes of upload), so 16 MiB of empty
// entries would cost ~100 MiB; the directory budget refuses them early.
func TestManyEntriesAreRefusedBounded(t *testing.T) {
	data := testkit.EmptyEntriesZip(16 << 20 / 47)
	var err error
	n := allocated(func() { _, err = SettingsModule(data) })
	if !errors.Is(err, ErrTooManyFiles) {
		t.Fatalf("SettingsModule(%d entries) = %v, want ErrTooManyFiles", 16<<20/47, err)
	}
	if n > 48<<20 {
		t.Errorf("refusing the egg allocated %d MiB", n>>20)
	}
	path := filepath.Join(t.TempDir(), "many.egg")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	n = allocated(func() { _, err = SettingsModuleOf(path) })
	if !errors.Is(err, ErrTooManyFiles) {
		t.Fatalf("SettingsModuleOf(%d entries) = %v, want ErrTooManyFiles", 16<<20/47, err)
	}
	if n > 48<<20 {
		t.Errorf("refusing the stored egg allocated %d MiB", n>>20)
	}
}

// TestLargeRealEggIsAccepted: the directory budget leaves room for far
// more files than a project has.
func TestLargeRealEggIsAccepted(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i < 20000; i++ {
		if _, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("bigproject/vendor/package%03d/module_%05d.py", i/100, i), Method: zip.Store}); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := zw.Create("EGG-INFO/entry_points.txt")
	w.Write([]byte("[scrapy]\nsettings = bigproject.settings\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if mod, err := SettingsModule(buf.Bytes()); mod != "bigproject.settings" || err != nil {
		t.Fatalf("SettingsModule(20000 files) = %q, %v", mod, err)
	}
}

// zerosEntryPoints is an egg whose entry_points.txt starts with a valid
// entry point and goes on with size bytes of zeros (deflated: ~1 KiB per
// MiB), while its headers claim declared bytes.
func zerosEntryPoints(t *testing.T, size, declared uint64) []byte {
	t.Helper()
	head := []byte("[scrapy]\nsettings = bomb.settings\n")
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(head)
	fw.Write(make([]byte, size))
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "EGG-INFO/entry_points.txt", Method: zip.Deflate,
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: declared})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	zw.Close()
	return buf.Bytes()
}

// TestEntryPointsBombs: entry_points.txt is read only up to 1 MiB when its
// headers say how large it is, and not past what they say when they lie
// (archive/zip then fails the read: the egg is refused).
func TestEntryPointsBombs(t *testing.T) {
	const size = 64 << 20
	for _, c := range []struct {
		name     string
		declared uint64
		want     string
	}{
		{"declared as it is", size + 34, "entry_points.txt is 67108898 bytes"},
		{"declared absurdly large", 1 << 62, "entry_points.txt is 4611686018427387904 bytes"},
		{"declared small", 40, ErrNoEntryPoint.Error()},
		{"declared smaller than the entry point", 10, ErrNoEntryPoint.Error()},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := zerosEntryPoints(t, size, c.declared)
			var (
				mod string
				err error
			)
			n := allocated(func() { mod, err = SettingsModule(data) })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("SettingsModule = %q, %v; want error %q", mod, err, c.want)
			}
			if n > 8<<20 {
				t.Errorf("reading a %d-byte egg allocated %d MiB", len(data), n>>20)
			}
		})
	}
}
