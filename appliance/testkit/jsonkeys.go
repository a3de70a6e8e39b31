package testkit

import (
	"bytes"
	"encoding/json"
	"testing"
)

// JSONKeys returns a JSON object's top-level keys in the order sent, which
// decoding into a map loses (Scrapyd's clients and tests see the order).
func JSONKeys(t testing.TB, body string) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(body)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", body)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
	}
	return keys
}
