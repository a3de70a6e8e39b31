package e2e

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// TestPythonMissing: with no interpreter, uploads get a clear error and
// store nothing, and a scheduled job ends as failed with the reason in its
// log: no job is stuck and no slot is leaked.
func TestPythonMissing(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{Conf: "python = /nonexistent/python3\nmax_proc = 1"})
	r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t))
	if r["status"] != "error" || !strings.Contains(r["message"].(string), "RunnerError: /nonexistent/python3 -m scrapy list:") {
		t.Fatalf("upload without python: %v", r)
	}
	if r := d.Get(t, "listprojects.json", nil); len(toStrings(r["projects"])) != 0 {
		t.Fatalf("a failed upload was stored: %v", r)
	}
	// With python back (a live change), the upload works and the spider
	// list is cached; then python goes missing again before the crawls.
	conf := d.Path("etc/scrapyd/conf.d/60-python.conf")
	os.WriteFile(conf, []byte("[scrapyd]\npython = "+testkit.Python+"\n"), 0o644)
	testkit.Eventually(t, waitCrawl, "python to be configured again", func() bool {
		return d.Upload(t, "sample", "1.0", testkit.SampleEgg(t))["status"] == "ok"
	})
	os.Remove(conf)
	testkit.Eventually(t, waitCrawl, "python to go missing again", func() bool {
		return d.Upload(t, "sample", "2.0", testkit.SampleEgg(t))["status"] == "error"
	})
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}, "_version": {"1.0"}}))
	}
	for _, id := range ids {
		fin := waitState(t, d, id, "finished")
		if fin["outcome"] != "failed" {
			t.Fatalf("job without python ended %v", fin)
		}
		if log := readFile(d.Path("var/log/scrapyd/sample/params", id+".log")); !strings.Contains(log, "crawl could not be started") || !strings.Contains(log, "/nonexistent/python3") {
			t.Fatalf("the log does not say why: %q", log)
		}
	}
	if r := d.Get(t, "daemonstatus.json", nil); r["running"] != 0.0 || r["pending"] != 0.0 {
		t.Fatalf("jobs stuck: %v", r)
	}
}

// TestDiskFull puts eggs_dir and dbs_dir on small file systems: a full
// disk gives clear errors and corrupts nothing, and service is normal when
// space returns.
func TestDiskFull(t *testing.T) {
	testkit.RequireScrapy(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to mount a tmpfs")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	t.Parallel()
	base, err := os.MkdirTemp("", "scrapyd-full-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	t.Cleanup(func() { os.RemoveAll(base) })
	eggs, dbs := filepath.Join(base, "eggs"), filepath.Join(base, "dbs")
	for _, dir := range []string{eggs, dbs} {
		os.MkdirAll(dir, 0o755)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	}
	d := testkit.StartDaemon(t, testkit.Options{Conf: "eggs_dir = " + eggs + "\ndbs_dir = " + dbs + "\nmax_proc = 1"})
	if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload: %v", r)
	}
	// An egg bigger than the space left: refused, nothing half-written.
	big := paddedEgg(t, testkit.SampleEgg(t), 3<<20)
	r := d.Upload(t, "sample", "2.0", big)
	if r["status"] != "error" || !strings.Contains(r["message"].(string), "no space left on device") {
		t.Fatalf("upload to a full disk: %v", r)
	}
	if vs := toStrings(d.Get(t, "listversions.json", url.Values{"project": {"sample"}})["versions"]); strings.Join(vs, ",") != "1.0" {
		t.Fatalf("versions after a failed upload: %v", vs)
	}
	if left, _ := os.ReadDir(filepath.Join(eggs, ".staging")); len(left) != 0 {
		t.Fatalf("half-written upload left behind: %v", left)
	}
	// The database's disk fills up: schedules fail clearly, none is lost.
	ok := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}})
	// Its start recorded first: a crawl whose start cannot be recorded
	// is stopped and ends failed with that reason (it must not run
	// untracked), which is not what this test is about. Its end may
	// come while the disk is full: it is recorded once space returns.
	testkit.Eventually(t, waitCrawl, "the first job's start recorded", func() bool {
		if j := jobIn(t, d, "running", ok); j != nil && j["pid"] != nil {
			return true
		}
		return jobIn(t, d, "finished", ok) != nil
	})
	filler := filepath.Join(dbs, "filler")
	f, _ := os.Create(filler)
	io.Copy(f, io.LimitReader(rand.Reader, 4<<20)) // fills the tmpfs, whatever fits
	f.Close()
	var refused map[string]any
	for i := 0; i < 50; i++ {
		r := d.Post(t, "schedule.json", url.Values{"project": {"sample"}, "spider": {"params"}, "limit": {strings.Repeat("x", 10000)}})
		if r["status"] == "error" {
			refused = r
			break
		}
	}
	if refused == nil || !strings.Contains(refused["message"].(string), "full") {
		t.Fatalf("schedule on a full disk: %v", refused)
	}
	os.Remove(filler)
	again := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}})
	for _, id := range []string{ok, again} {
		if fin := waitState(t, d, id, "finished"); fin["outcome"] != "finished" {
			t.Fatalf("job %s after the disk freed: %v", id, fin)
		}
	}
	if r := d.Upload(t, "sample", "3.0", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatalf("upload after space returned: %v", r)
	}
}

// paddedEgg is egg plus an incompressible file, so that it is size bytes.
func paddedEgg(t *testing.T, egg []byte, size int) []byte {
	zr, err := zip.NewReader(bytes.NewReader(egg), int64(len(egg)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		w, _ := zw.CreateHeader(&f.FileHeader)
		rc, _ := f.Open()
		io.Copy(w, rc)
		rc.Close()
	}
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "sample/data/padding.bin", Method: zip.Store})
	io.Copy(w, io.LimitReader(rand.Reader, int64(size)))
	zw.Close()
	return buf.Bytes()
}
