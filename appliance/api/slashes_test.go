package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest writes req as it is on a new connection and reads one answer.
func rawRequest(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// TestDoubledSlashes: scrapyd-client asks for //listprojects.json when the
// URL in scrapy.cfg ends in "/" (its deploy joins url + "/listprojects.json");
// repeated slashes anywhere are served as the single-slash path, query
// string kept.
func TestDoubledSlashes(t *testing.T) {
	h := newHarness(t, "")
	addr := strings.TrimPrefix(h.serve(t), "http://")
	for _, c := range []struct{ path, want string }{
		{"//listprojects.json", `{"projects": [], "status": "ok", "node_name": "vm"}`},
		{"///daemonstatus.json", `{"pending": 0, "running": 0, "finished": 0, "status": "ok", "node_name": "vm"}`},
		{"//listversions.json?project=nope", `{"versions": [], "status": "ok", "node_name": "vm"}`},
	} {
		resp, body := rawRequest(t, addr, "GET "+c.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 || body != c.want+"\n" {
			t.Errorf("GET %s: HTTP %d %q, want %q", c.path, resp.StatusCode, body, c.want)
		}
	}
	resp, _ := rawRequest(t, addr, "GET //nosuch.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 404 {
		t.Errorf("GET //nosuch.json: HTTP %d", resp.StatusCode)
	}
}
