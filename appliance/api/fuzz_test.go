package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzScheduleParams sends arbitrary bodies and query strings to
// schedule.json: every answer is Scrapyd's JSON envelope with HTTP 200, a
// job is queued only when the answer says ok, and nothing panics.
func FuzzScheduleParams(f *testing.F) {
	h := newHarness(f, "")
	h.do(f, request{method: http.MethodPost, path: "/addversion.json", multipart: map[string]string{"project": "sample", "version": "1", "egg": string(testEgg(f, "sample.settings"))}})
	for _, s := range []string{"project=sample&spider=params", "project=sample&spider=../x", "project=%C3&spider=a", "setting=A&project=sample&spider=params", "priority=1e400&project=sample&spider=params", "jobid=%00"} {
		f.Add(s, "")
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, body, query string) {
		before, _, _ := h.st.Counts()
		req := httptest.NewRequest(http.MethodPost, "/schedule.json", strings.NewReader(body))
		if u, err := req.URL.Parse("/schedule.json?" + query); err == nil {
			req.URL = u
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := h.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(data, &out) != nil || !utf8.Valid(data) {
			t.Fatalf("HTTP %d %q", resp.StatusCode, data)
		}
		after, _, _ := h.st.Counts()
		if queued := after - before; out["status"] == "ok" && queued != 1 || out["status"] != "ok" && queued != 0 {
			t.Fatalf("answer %v but %d jobs queued", out, queued)
		}
	})
}

// FuzzCheckUTF8 agrees with Go's decoder on what is valid UTF-8.
func FuzzCheckUTF8(f *testing.F) {
	f.Add("héllo")
	f.Add("\xc3(")
	f.Add("ab\xe2\x82")
	f.Fuzz(func(t *testing.T, s string) {
		if (checkUTF8("p", s) == nil) != utf8.ValidString(s) {
			t.Fatalf("checkUTF8 and utf8.ValidString disagree on %q", s)
		}
	})
}
