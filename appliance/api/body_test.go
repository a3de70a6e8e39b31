package api

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// conn is one kept-alive client connection to the harness's app.
type conn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (h *harness) dial(t *testing.T) *conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.serve(t), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, c: c, r: bufio.NewReader(c)}
}

// do writes a request as it is and reads its answer.
func (c *conn) do(req string) (int, string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, req); err != nil {
		c.t.Fatal(err)
	}
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func post(path string, header, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s", path, header, len(body), body)
}

const listProjects = "GET /listprojects.json HTTP/1.1\r\nHost: x\r\n\r\n"

// upload is an addversion.json body for sample 1.0. Clients send the egg
// last, and it is staged as it is read; sent first, it is held until the
// project is known.
func upload(egg []byte, eggFirst bool) (string, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	file := func() {
		fw, _ := mw.CreateFormFile("egg", "project.egg")
		fw.Write(egg)
	}
	if eggFirst {
		file()
	}
	mw.WriteField("project", "sample")
	mw.WriteField("version", "1.0")
	if !eggFirst {
		file()
	}
	mw.Close()
	return buf.String(), "Content-Type: " + mw.FormDataContentType() + "\r\n"
}

// stagedFiles lists what the egg store's staging area holds.
func (h *harness) stagedFiles(t *testing.T) []string {
	ents, _ := os.ReadDir(filepath.Join(h.root, "var/lib/scrapyd/eggs/.staging"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestContentEncodingRefused: a body with a Content-Encoding is refused,
// whatever the coding and the endpoint, before anything is decoded; the
// body is read past, so the connection goes on serving.
func TestContentEncodingRefused(t *testing.T) {
	h := newHarness(t, "")
	c := h.dial(t)
	body, ct := upload(testEgg(t, "sample.settings"), false)
	for _, r := range []struct{ req, want string }{
		{post("/addversion.json", ct+"Content-Encoding: gzip\r\n", body),
			`{"status": "error", "message": "Content-Encoding gzip is not supported: send the request body uncompressed", "node_name": "vm"}`},
		{post("/schedule.json", "Content-Type: application/x-www-form-urlencoded\r\nContent-Encoding: identity, br\r\n", "project=sample&spider=s"),
			`{"status": "error", "message": "Content-Encoding br is not supported: send the request body uncompressed", "node_name": "vm"}`},
		{listProjects, `{"projects": [], "status": "ok", "node_name": "vm"}`},
		// identity is no coding: the upload is stored.
		{post("/addversion.json", ct+"Content-Encoding: identity\r\n", body), `{"project": "sample", "version": "1.0", "spiders": 4, "status": "ok", "node_name": "vm"}`},
	} {
		if code, got := c.do(r.req); code != 200 || got != r.want+"\n" {
			t.Errorf("%.60q: HTTP %d %s, want %s", r.req, code, got, r.want)
		}
	}
	if staged := h.stagedFiles(t); len(staged) != 0 {
		t.Errorf("staging holds %q", staged)
	}
}

// TestUploadStreamed: the egg is stored whether it comes after the project
// (staged as it is read) or before it; a broken or oversized body leaves
// nothing behind, and the connection serves on when the body was read.
func TestUploadStreamed(t *testing.T) {
	h := newHarness(t, "")
	c := h.dial(t)
	for _, eggFirst := range []bool{false, true} {
		body, ct := upload(testEgg(t, "sample.settings"), eggFirst)
		if code, got := c.do(post("/addversion.json", ct, body)); code != 200 || !strings.Contains(got, `"spiders": 4, "status": "ok"`) {
			t.Fatalf("egg first %v: HTTP %d %s", eggFirst, code, got)
		}
	}
	body, ct := upload(testEgg(t, "sample.settings"), false)
	if _, got := c.do(listProjects); !strings.Contains(got, `"projects": ["sample"]`) {
		t.Errorf("after the upload: %s", got)
	}

	// Truncated: the last boundary never comes.
	cut := body[:len(body)-50]
	if _, got := c.do(post("/addversion.json", ct, cut)); !strings.Contains(got, "the multipart body could not be read") {
		t.Errorf("truncated body: %s", got)
	}
	// The egg value of a form (curl -F egg=path) is staged too, and refused.
	if _, got := c.do(post("/addversion.json", "Content-Type: application/x-www-form-urlencoded\r\n", "project=p&version=1&egg=egg.egg")); !strings.Contains(got, "egg is not a ZIP file") {
		t.Errorf("egg as a value: %s", got)
	}
	if staged := h.stagedFiles(t); len(staged) != 0 {
		t.Errorf("staging holds %q", staged)
	}

	// Chunked, over the harness's 4 MiB: refused as it passes the limit.
	big, bigCT := upload(bytes.Repeat([]byte("x"), 5<<20), false)
	var req strings.Builder
	fmt.Fprintf(&req, "POST /addversion.json HTTP/1.1\r\nHost: x\r\n%sTransfer-Encoding: chunked\r\n\r\n", bigCT)
	for i := 0; i < len(big); i += 64 << 10 {
		chunk := big[i:min(i+64<<10, len(big))]
		fmt.Fprintf(&req, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	req.WriteString("0\r\n\r\n")
	c = h.dial(t)
	go io.WriteString(c.c, req.String())
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if want := `{"status": "error", "message": "the request body is larger than upload_limit", "node_name": "vm"}` + "\n"; string(got) != want {
		t.Errorf("chunked over the limit: %q", got)
	}
	if staged := h.stagedFiles(t); len(staged) != 0 {
		t.Errorf("staging holds %q", staged)
	}
}

// TestRefusedUploadKeepsConnection: an upload refused before its body is
// read (no credentials) is read past, so the client gets the 401 and its
// connection serves the next request.
func TestRefusedUploadKeepsConnection(t *testing.T) {
	h := newHarness(t, "username = hello12345\npassword = 67890world\n")
	c := h.dial(t)
	body, ct := upload(bytes.Repeat([]byte("x"), 1<<20), false)
	if code, got := c.do(post("/addversion.json", ct, body)); code != 401 || got != "Unauthorized" {
		t.Errorf("upload without credentials: HTTP %d %q", code, got)
	}
	code, got := c.do("GET /listprojects.json HTTP/1.1\r\nHost: x\r\nAuthorization: Basic aGVsbG8xMjM0NTo2Nzg5MHdvcmxk\r\n\r\n")
	if code != 200 || !strings.Contains(got, `"status": "ok"`) {
		t.Errorf("the next request: HTTP %d %q", code, got)
	}
	if staged := h.stagedFiles(t); len(staged) != 0 {
		t.Errorf("staging holds %q", staged)
	}
}
