package e2e

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// gzipBomb is a multipart addversion.json body whose egg is decoded bytes
// of zeros, gzip-compressed: some 300 KB on the wire for 300 MB decoded.
func gzipBomb(t testing.TB, decoded int) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	mw := multipart.NewWriter(zw)
	mw.WriteField("project", "bomb")
	mw.WriteField("version", "1.0")
	fw, _ := mw.CreateFormFile("egg", "project.egg")
	zeros := make([]byte, 1<<20)
	for n := 0; n < decoded; n += len(zeros) {
		fw.Write(zeros)
	}
	mw.Close()
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// post sends body with the given headers and decodes the JSON answer.
func post(t *testing.T, d *testkit.Daemon, endpoint string, body []byte, header map[string]string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.URL+"/"+endpoint, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := d.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := map[string]any{"http": resp.StatusCode}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s: HTTP %d %q", endpoint, resp.StatusCode, data)
	}
	return out
}

// TestCompressedBodyRefusedBounded: a request body with a Content-Encoding
// (a 300 KB gzip that would decode to 300 MB; it took the daemon to 1.9 GB)
// is refused before anything is decoded, with Scrapyd's error answer; the
// daemon's peak memory stays under 100 MiB and nothing is stored.
func TestCompressedBodyRefusedBounded(t *testing.T) {
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{})
	body, ct := gzipBomb(t, 300<<20)
	t.Logf("gzip body: %d bytes on the wire for 300 MiB decoded", len(body))
	r := post(t, d, "addversion.json", body, map[string]string{"Content-Type": ct, "Content-Encoding": "gzip"})
	if r["http"] != 200 || r["status"] != "error" || !strings.Contains(r["message"].(string), "Content-Encoding gzip") {
		t.Errorf("gzip upload: %v", r)
	}
	// The same refusal on every path that reads a body, and for each coding.
	form := []byte(url.Values{"project": {"p"}, "spider": {"s"}}.Encode())
	for _, enc := range []string{"deflate", "br", "x-unknown"} {
		r = post(t, d, "schedule.json", form, map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": enc})
		if r["status"] != "error" || !strings.Contains(r["message"].(string), "Content-Encoding "+enc) {
			t.Errorf("schedule.json with Content-Encoding %s: %v", enc, r)
		}
	}
	if jobs := d.Get(t, "listjobs.json", nil); len(jobs["pending"].([]any)) != 0 {
		t.Errorf("a refused request scheduled a job: %v", jobs)
	}
	// identity is no coding at all.
	r = post(t, d, "schedule.json", form, map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "identity"})
	if r["message"] != "project 'p' not found" {
		t.Errorf("Content-Encoding identity: %v", r)
	}
	eggsDirHolds(t, d)
	hwm := procStatusMiB(t, d.PID(), "VmHWM")
	t.Logf("peak RSS (VmHWM) after the gzip body: %.1f MiB", hwm)
	if hwm >= 100 {
		t.Fatalf("peak RSS %.1f MiB after a gzip body, want < 100 MiB", hwm)
	}
}

// bigEgg is the sample project's egg plus a stored (uncompressed) member of
// random bytes, size bytes in all, so that no layer can shrink it.
func bigEgg(t testing.TB, size int) []byte {
	t.Helper()
	sample := testkit.SampleEgg(t)
	zr, err := zip.NewReader(bytes.NewReader(sample), int64(len(sample)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Grow(size + 1<<20)
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		if err := zw.Copy(f); err != nil {
			t.Fatal(err)
		}
	}
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "sample/padding.bin", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(w, rand.Reader, int64(size-len(sample)-1024)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// upload60MiB uploads a 60 MiB egg to a fresh daemon and returns the
// daemon's peak RSS before and after, in MiB.
func upload60MiB(t testing.TB) (before, after float64) {
	testkit.RequireScrapy(t)
	d := testkit.StartDaemon(t, testkit.Options{})
	egg := bigEgg(t, 60<<20)
	before = procStatusMiB(t, d.PID(), "VmHWM")
	if r := d.Upload(t, "big", "1.0", egg); r["status"] != "ok" || r["spiders"] != 4.0 {
		t.Fatalf("60 MiB upload: %v\n%s", r, d.Logs())
	}
	return before, procStatusMiB(t, d.PID(), "VmHWM")
}

// TestUploadHeldOnce: a 60 MiB upload is stored, and the daemon's peak
// memory grows by well under 1.5 times the upload (it was 2.4 times: the
// body, a copy, and its garbage).
func TestUploadHeldOnce(t *testing.T) {
	t.Parallel()
	before, after := upload60MiB(t)
	t.Logf("60 MiB upload: peak RSS (VmHWM) %.1f MiB before, %.1f MiB after", before, after)
	if limit := before + 1.5*60; after >= limit {
		t.Fatalf("peak RSS %.1f MiB after a 60 MiB upload, want < %.1f MiB", after, limit)
	}
}

// BenchmarkUpload60MiBPeakRSS reports the daemon's peak RSS during a
// 60 MiB upload (peak-MiB) and what the upload added to it (added-MiB).
func BenchmarkUpload60MiBPeakRSS(b *testing.B) {
	for i := 0; i < b.N; i++ {
		before, after := upload60MiB(b)
		b.ReportMetric(after, "peak-MiB")
		b.ReportMetric(after-before, "added-MiB")
	}
}
