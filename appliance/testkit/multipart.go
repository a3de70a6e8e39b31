package testkit

import (
	"bytes"
	"io"
	"mime/multipart"
	"testing"
)

// Multipart builds a multipart/form-data body with fields and one file
// part named fileField (filename "project.egg", as scrapyd-deploy sends).
func Multipart(t testing.TB, fields map[string]string, fileField string, file []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if fileField != "" {
		fw, err := w.CreateFormFile(fileField, "project.egg")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, w.FormDataContentType()
}
