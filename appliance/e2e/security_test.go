package e2e

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/eggbuild"
	"github.com/scrapyd-debian/scrapyd/appliance/testkit"
)

// The security promises, each kept by the real daemon binary: optional
// TLS, a warning when the API is open beyond this machine, credentials
// that never reach a file, and uploads that cannot make the daemon inflate,
// allocate or write without bound.

// selfSigned writes a certificate for 127.0.0.1 and localhost and its key
// into dir, and returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "scrapyd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "scrapyd.pem"), filepath.Join(dir, "scrapyd.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// TestTLSServesHTTPSOnly: with tls_cert and tls_key the API speaks HTTPS
// (TLS 1.2 at least) with that certificate, and plain HTTP on the same port
// gets no API answer.
func TestTLSServesHTTPSOnly(t *testing.T) {
	t.Parallel()
	certFile, keyFile, roots := selfSigned(t, t.TempDir())
	d := testkit.StartDaemon(t, testkit.Options{
		Conf:     fmt.Sprintf("tls_cert = %s\ntls_key = %s", certFile, keyFile),
		TLSRoots: roots,
	})
	if !strings.HasPrefix(d.URL, "https://") {
		t.Fatalf("URL %s", d.URL)
	}
	resp, err := d.Client.Get(d.URL + "/daemonstatus.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &st) != nil || st["status"] != "ok" {
		t.Fatalf("daemonstatus.json over HTTPS: HTTP %d %q", resp.StatusCode, body)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != "scrapyd test" {
		t.Fatalf("TLS state: %+v", resp.TLS)
	}

	plain := fmt.Sprintf("http://127.0.0.1:%d/daemonstatus.json", d.Port)
	pc := &http.Client{Timeout: 10 * time.Second}
	if resp, err := pc.Get(plain); err == nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(body), `"status"`) {
			t.Fatalf("plain HTTP on the TLS port answered HTTP %d %q", resp.StatusCode, body)
		}
		t.Logf("plain HTTP on the TLS port: HTTP %d %q", resp.StatusCode, body)
	} else {
		t.Logf("plain HTTP on the TLS port: %v", err)
	}

	// A client that does not trust the certificate, or that offers only
	// TLS 1.1, gets no answer either.
	for name, tc := range map[string]*tls.Config{
		"an untrusted certificate": {},
		"TLS 1.1":                  {RootCAs: roots, MaxVersion: tls.VersionTLS11},
	} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		if resp, err := c.Get(d.URL + "/daemonstatus.json"); err == nil {
			resp.Body.Close()
			t.Errorf("%s: HTTP %d, want a failed handshake", name, resp.StatusCode)
		}
	}
}

// failingStart runs the daemon with conf and returns what it printed; it
// must exit 1 without serving.
func failingStart(t *testing.T, conf string) string {
	t.Helper()
	// A root daemon's crawl user must reach its root (TestPrivateDataDirectory).
	root := testkit.TraversableTempDir(t)
	return failingStartIn(t, root, conf)
}

// failingStartIn is failingStart with the daemon's --root at root.
func failingStartIn(t *testing.T, root, conf string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "etc/scrapyd/conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/scrapyd/conf.d/50-test.conf"), []byte("[scrapyd]\n"+conf+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testkit.Binaries(t), "scrapyd"), "--root", root)
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(root, "home"), "SCRAPYD_BIND_ADDRESS=127.0.0.1",
		"SCRAPYD_HTTP_PORT="+strconv.Itoa(testkit.FreePort(t)))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("scrapyd with %q: %v, want exit status 1\n%s", conf, err, out)
	}
	return string(out)
}

// TestTLSHalfConfiguredRefused: the daemon refuses to start, and says why,
// rather than serve plain HTTP when TLS was asked for but cannot work.
func TestTLSHalfConfiguredRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	_, otherKey, _ := selfSigned(t, other)
	for _, c := range []struct{ conf, want string }{
		{"tls_cert = " + certFile, "/50-test.conf:2: tls_cert: tls_cert and tls_key must be set together"},
		{"tls_key = " + keyFile, "/50-test.conf:2: tls_key: tls_cert and tls_key must be set together"},
		{"tls_cert = " + dir + "/missing.pem\ntls_key = " + keyFile, "tls_cert/tls_key: open " + dir + "/missing.pem: no such file or directory"},
		{"tls_cert = " + certFile + "\ntls_key = " + otherKey, "tls_cert/tls_key: tls: private key does not match public key"},
	} {
		if out := failingStart(t, c.conf); !strings.Contains(out, c.want) {
			t.Errorf("scrapyd with %q printed %q, want %q", c.conf, out, c.want)
		}
	}
}

// basicAuth is a transport that sends credentials with every request.
type basicAuth struct{ user, pass string }

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return http.DefaultTransport.RoundTrip(r)
}

func authClient(user, pass string) *http.Client {
	return &http.Client{Transport: basicAuth{user, pass}, Timeout: 60 * time.Second}
}

// httpStatus is the HTTP status of a GET with these credentials ("" user:
// none).
func httpStatus(t *testing.T, rawURL, user, pass string) int {
	t.Helper()
	c := http.DefaultClient
	if user != "" {
		c = authClient(user, pass)
	}
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func warningsOf(st map[string]any) []string {
	ws, _ := st["warnings"].([]any)
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i], _ = w.(string)
	}
	return out
}

// warnLines are the daemon log's warnings about missing authentication.
func warnLines(d *testkit.Daemon) []string {
	data, _ := os.ReadFile(d.Path("var/log/scrapyd/scrapyd.log"))
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "without username and password") {
			out = append(out, l)
		}
	}
	return out
}

// TestWarnWithoutAuthBeyondLoopback: bound beyond loopback without a
// password, the daemon warns in its log at start and in diagnostics.json
// for as long as it lasts; with a password, or on loopback, it does not.
func TestWarnWithoutAuthBeyondLoopback(t *testing.T) {
	t.Parallel()
	t.Run("open on 0.0.0.0", func(t *testing.T) {
		d := testkit.StartDaemon(t, testkit.Options{BindAddress: "0.0.0.0", Conf: "node_name = open"})
		// Go listens on [::] (both IPv4 and IPv6) for 0.0.0.0.
		if logs := d.Logs(); !strings.Contains(logs, fmt.Sprintf("address=0.0.0.0:%d", d.Port)) && !strings.Contains(logs, fmt.Sprintf("address=[::]:%d", d.Port)) {
			t.Fatalf("not listening on every address, port %d:\n%s", d.Port, logs)
		}
		if ls := warnLines(d); len(ls) != 1 || !strings.Contains(ls[0], "bind_address = 0.0.0.0") || !strings.Contains(ls[0], "can run code on this machine") {
			t.Fatalf("start-up warnings in the log: %q\n%s", ls, d.Logs())
		}
		ws := warningsOf(d.Get(t, "diagnostics.json", nil))
		if len(ws) != 1 || !strings.Contains(ws[0], "bind_address = 0.0.0.0 without username and password") {
			t.Fatalf("diagnostics.json warnings = %q", ws)
		}

		// Setting a password (a live change) ends the warning; removing it
		// brings it back, in diagnostics.json and in the log.
		confFile := d.Path("etc/scrapyd/conf.d/60-auth.conf")
		os.WriteFile(confFile, []byte("[scrapyd]\nusername = admin\npassword = Secret-60\nnode_name = closed\n"), 0o644)
		d.Client = authClient("admin", "Secret-60")
		testkit.Eventually(t, waitCrawl, "auth on", func() bool {
			return httpStatus(t, d.URL+"/daemonstatus.json", "", "") == 401
		})
		if ws := warningsOf(d.Get(t, "diagnostics.json", nil)); len(ws) != 0 {
			t.Fatalf("warnings with a password: %q", ws)
		}
		os.Remove(confFile)
		d.Client = http.DefaultClient
		testkit.Eventually(t, waitCrawl, "auth off", func() bool {
			return httpStatus(t, d.URL+"/daemonstatus.json", "", "") == 200
		})
		if ws := warningsOf(d.Get(t, "diagnostics.json", nil)); len(ws) != 1 {
			t.Fatalf("warnings once the password is gone: %q", ws)
		}
		testkit.Eventually(t, waitCrawl, "the warning logged again", func() bool { return len(warnLines(d)) == 2 })
	})
	t.Run("password on 0.0.0.0", func(t *testing.T) {
		d := testkit.StartDaemon(t, testkit.Options{BindAddress: "0.0.0.0", Conf: "username = admin\npassword = Secret-1"})
		d.Client = authClient("admin", "Secret-1")
		st := d.Get(t, "diagnostics.json", nil)
		if st["status"] != "ok" || len(warningsOf(st)) != 0 {
			t.Fatalf("diagnostics.json = %v", st)
		}
		if ls := warnLines(d); len(ls) != 0 {
			t.Fatalf("warned with a password: %q", ls)
		}
	})
	t.Run("loopback", func(t *testing.T) {
		d := testkit.StartDaemon(t, testkit.Options{})
		st := d.Get(t, "diagnostics.json", nil)
		if ws, ok := st["warnings"].([]any); !ok || len(ws) != 0 {
			t.Fatalf("diagnostics.json warnings = %#v, want []", st["warnings"])
		}
		if ls := warnLines(d); len(ls) != 0 {
			t.Fatalf("warned on loopback: %q", ls)
		}
	})
}

// filesContaining lists the files below dir (skipping the directories
// named in skip, relative to dir) that contain any of needles.
func filesContaining(t *testing.T, dir string, skip []string, needles ...string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, s := range skip {
			if rel == s {
				return filepath.SkipDir
			}
		}
		if !e.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(data, []byte(n)) {
				found = append(found, fmt.Sprintf("%s contains %q", rel, n))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// bodyOf is the body of a request's answer.
func bodyOf(t *testing.T, c *http.Client, method, rawURL, contentType string, body io.Reader) string {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// TestCredentialsNeverLogged: neither the password nor the Authorization
// header that carries it reaches any file the daemon writes (its log, its
// stdout and stderr, the crawls' logs, its database), whether requests
// bring the right credentials or wrong ones, across a live password
// change; `scrapyd config show` masks it.
func TestCredentialsNeverLogged(t *testing.T) {
	t.Parallel()
	token := func(prefix string) string {
		b := make([]byte, 8)
		rand.Read(b)
		return prefix + hex.EncodeToString(b)
	}
	pass, next, wrong := token("Pw1-"), token("Pw2-"), token("Bad-")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	secrets := []string{pass, next, wrong, b64("admin:" + pass), b64("admin:" + next), b64("admin:" + wrong), b64(pass), b64(next)}

	d := testkit.StartDaemon(t, testkit.Options{Conf: "username = admin\npassword = " + pass + "\ndebug = on"})
	status := d.URL + "/daemonstatus.json"
	if code := httpStatus(t, status, "admin", pass); code != 200 {
		t.Fatalf("right credentials: HTTP %d", code)
	}
	for _, c := range [][2]string{{"admin", wrong}, {"nobody", pass}, {pass, "x"}, {"admin", ""}} {
		if code := httpStatus(t, status, c[0], c[1]); code != 401 {
			t.Fatalf("credentials %q: HTTP %d, want 401", c, code)
		}
	}
	if code := httpStatus(t, status, "", ""); code != 401 {
		t.Fatalf("no credentials: HTTP %d, want 401", code)
	}
	for _, h := range []string{"Basic !!!" + pass, "Bearer " + pass, "Basic " + b64("admin:"+wrong)} {
		req, _ := http.NewRequest("GET", status, nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("Authorization %q: HTTP %d, want 401", h, resp.StatusCode)
		}
	}
	// Requests that fail inside the API (with debug on, the answer is the
	// plain-text error, as in Scrapyd's debug mode).
	d.Client = authClient("admin", pass)
	body, ct := testkit.Multipart(t, map[string]string{"project": "creds", "version": "1.0"}, "egg", []byte("not an egg"))
	if got := bodyOf(t, d.Client, "POST", d.URL+"/addversion.json", ct, body); !strings.Contains(got, "egg is not a ZIP file") {
		t.Fatalf("upload of garbage: %q", got)
	}
	form := strings.NewReader(url.Values{"project": {"nosuch"}, "spider": {"x"}}.Encode())
	if got := bodyOf(t, d.Client, "POST", d.URL+"/schedule.json", "application/x-www-form-urlencoded", form); !strings.Contains(got, "nosuch") {
		t.Fatalf("schedule in no project: %q", got)
	}
	if exec.Command(testkit.Python, "-c", "import scrapy").Run() == nil {
		// A real upload and crawl, when Scrapy is here (CI always has it).
		if r := d.Upload(t, "sample", "1.0", testkit.SampleEgg(t)); r["status"] != "ok" {
			t.Fatalf("upload: %v", r)
		}
		id := schedule(t, d, url.Values{"project": {"sample"}, "spider": {"params"}})
		if fin := waitState(t, d, id, "finished"); fin["outcome"] != "finished" {
			t.Fatalf("crawl: %v", fin)
		}
	}

	// A live password change: the new one works, the old one no longer.
	confFile := d.Path("etc/scrapyd/conf.d/50-test.conf")
	if err := os.WriteFile(confFile+".tmp", []byte("[scrapyd]\nusername = admin\npassword = "+next+"\ndebug = on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(confFile+".tmp", confFile); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitCrawl, "the new password", func() bool { return httpStatus(t, status, "admin", next) == 200 })
	if code := httpStatus(t, status, "admin", pass); code != 401 {
		t.Fatalf("the old password after the change: HTTP %d", code)
	}

	for _, args := range [][]string{{"config", "show"}, {"config", "check"}} {
		cmd := exec.Command(filepath.Join(testkit.Binaries(t), "scrapyd"), append(args, "--root", d.Root)...)
		cmd.Env, cmd.Dir = d.Env, d.Root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scrapyd %s: %v\n%s", args, err, out)
		}
		for _, s := range secrets {
			if strings.Contains(string(out), s) {
				t.Errorf("scrapyd %s printed %q:\n%s", args, s, out)
			}
		}
		if args[1] == "show" && !strings.Contains("\n"+string(out), "\npassword ") || args[1] == "show" && !strings.Contains(string(out), " (set) ") {
			t.Errorf("scrapyd config show does not say the password is set:\n%s", out)
		}
	}

	d.Stop()
	logs, _ := os.ReadDir(d.Path("var/log/scrapyd"))
	if len(logs) == 0 {
		t.Fatal("no log files")
	}
	// The whole root but the configuration itself: logs_dir (scrapyd.log,
	// the crawls' logs, scrapyd.out and scrapyd.err when systemd writes
	// them there), the daemon's stdout and stderr, the database, the eggs.
	if found := filesContaining(t, d.Root, []string{"etc"}, secrets...); len(found) != 0 {
		t.Fatalf("credentials written to files:\n%s", strings.Join(found, "\n"))
	}
	if !strings.Contains(d.Logs(), "changed=[password]") {
		t.Errorf("the password change is not in the log:\n%s", d.Logs())
	}
}

const entryPoints = "[scrapy]\nsettings = sample.settings\n"

// deflatedZeros is head and then n zeros (n a multiple of 1 MiB), deflated
// without ever holding the zeros: a MiB of zeros deflated by a fresh
// compressor and ended by a sync flush decodes the same wherever it
// stands, so the stream repeats it. A GiB costs ~1 MiB.
func deflatedZeros(head []byte, n int64) (comp []byte, crc uint32) {
	deflate := func(data []byte, final bool) []byte {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, flate.BestCompression)
		w.Write(data)
		if final {
			w.Close()
		} else {
			w.Flush()
		}
		return b.Bytes()
	}
	zeros := make([]byte, 1<<20)
	chunk := deflate(zeros, false)
	out := bytes.NewBuffer(deflate(head, false))
	crc = crc32.ChecksumIEEE(head)
	for i := int64(0); i < n>>20; i++ {
		out.Write(chunk)
		crc = crc32.Update(crc, crc32.IEEETable, zeros)
	}
	out.Write(deflate(nil, true))
	return out.Bytes(), crc
}

// zipOf builds an egg: files deflated as they are, plus raw members whose
// headers say what the test wants them to say.
func zipOf(t *testing.T, files map[string]string, raw ...rawMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
	}
	for _, m := range raw {
		m.header.Method = zip.Deflate
		m.header.CompressedSize64 = uint64(len(m.comp))
		w, err := zw.CreateRaw(&m.header)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(m.comp)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type rawMember struct {
	header zip.FileHeader
	comp   []byte
}

// gibBomb is name holding head and a GiB of zeros, its headers declaring
// declared bytes (0: the truth).
func gibBomb(name, head string, declared uint64) rawMember {
	comp, crc := deflatedZeros([]byte(head), 1<<30)
	if declared == 0 {
		declared = uint64(len(head)) + 1<<30
	}
	return rawMember{zip.FileHeader{Name: name, CRC32: crc, UncompressedSize64: declared}, comp}
}

// claimsEntries is a one-file zip whose zip64 end record claims n entries.
func claimsEntries(t *testing.T, n uint64) []byte {
	t.Helper()
	z := zipOf(t, map[string]string{"EGG-INFO/entry_points.txt": entryPoints})
	end := z[len(z)-22:]
	dirSize, dirOffset := binary.LittleEndian.Uint32(end[12:]), binary.LittleEndian.Uint32(end[16:])
	b := bytes.NewBuffer(append([]byte(nil), z[:len(z)-22]...))
	end64 := b.Len()
	rec := make([]byte, 56)
	binary.LittleEndian.PutUint32(rec, 0x06064b50)
	binary.LittleEndian.PutUint64(rec[4:], 44)
	binary.LittleEndian.PutUint16(rec[12:], 45)
	binary.LittleEndian.PutUint16(rec[14:], 45)
	binary.LittleEndian.PutUint64(rec[24:], n)
	binary.LittleEndian.PutUint64(rec[32:], n)
	binary.LittleEndian.PutUint64(rec[40:], uint64(dirSize))
	binary.LittleEndian.PutUint64(rec[48:], uint64(dirOffset))
	b.Write(rec)
	loc := make([]byte, 20)
	binary.LittleEndian.PutUint32(loc, 0x07064b50)
	binary.LittleEndian.PutUint64(loc[8:], uint64(end64))
	binary.LittleEndian.PutUint32(loc[16:], 1)
	b.Write(loc)
	e := make([]byte, 22)
	binary.LittleEndian.PutUint32(e, 0x06054b50)
	binary.LittleEndian.PutUint16(e[8:], 0xffff)
	binary.LittleEndian.PutUint16(e[10:], 0xffff)
	binary.LittleEndian.PutUint32(e[12:], 0xffffffff)
	binary.LittleEndian.PutUint32(e[16:], 0xffffffff)
	b.Write(e)
	return b.Bytes()
}

// procStatusMiB is a /proc/PID/status field (VmRSS, VmHWM) in MiB.
func procStatusMiB(t testing.TB, pid int, field string) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// maxRSSMiB bounds the daemon's memory after a hostile upload: the upload
// itself (up to upload_limit, 64 MiB) is buffered, nothing may multiply it.
const maxRSSMiB = 200

// eggsDirHolds checks the eggs directory holds nothing but the versions of
// these projects: no staged upload left behind, no stray file.
func eggsDirHolds(t *testing.T, d *testkit.Daemon, projects ...string) {
	t.Helper()
	dir := d.Path("var/lib/scrapyd/eggs")
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		parts := strings.Split(rel, string(filepath.Separator))
		switch {
		case len(parts) == 1 && e.IsDir() && (parts[0] == ".staging" || contains(projects, parts[0])):
		case len(parts) == 2 && e.Type().IsRegular() && contains(projects, parts[0]) &&
			(strings.HasSuffix(parts[1], ".egg") || strings.HasPrefix(parts[1], ".") && strings.HasSuffix(parts[1], ".version")):
		default:
			t.Errorf("eggs_dir holds %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// stillBounded checks the daemon answers and its memory stays bounded.
func stillBounded(t *testing.T, d *testkit.Daemon, what string) {
	t.Helper()
	if st := d.Get(t, "daemonstatus.json", nil); st["status"] != "ok" {
		t.Fatalf("after %s: daemonstatus.json = %v", what, st)
	}
	rss, hwm := procStatusMiB(t, d.PID(), "VmRSS"), procStatusMiB(t, d.PID(), "VmHWM")
	t.Logf("after %s: VmRSS %.0f MiB, VmHWM %.0f MiB", what, rss, hwm)
	if rss > maxRSSMiB {
		t.Fatalf("after %s the daemon uses %.0f MiB (VmRSS), more than %d", what, rss, maxRSSMiB)
	}
}

// TestBombEggsAreRefusedBounded: hostile uploads (a GiB-inflating
// entry_points.txt, absurd sizes and counts, a directory of a million
// entries, bytes that are no zip) get Scrapyd's error answer; the daemon
// stays small and responsive and stores nothing of them.
func TestBombEggsAreRefusedBounded(t *testing.T) {
	t.Parallel()
	d := testkit.StartDaemon(t, testkit.Options{})
	garbage := make([]byte, 1<<20)
	rand.Read(garbage)
	for _, c := range []struct {
		name string
		egg  func() []byte
		want string
	}{
		{"entry_points.txt inflating to a GiB", func() []byte {
			return zipOf(t, nil, gibBomb("EGG-INFO/entry_points.txt", entryPoints, 0))
		}, fmt.Sprintf("entry_points.txt is %d bytes", len(entryPoints)+1<<30)},
		{"entry_points.txt inflating to a GiB, declared 64 bytes", func() []byte {
			return zipOf(t, nil, gibBomb("EGG-INFO/entry_points.txt", strings.Repeat("\n", 64), 64))
		}, "egg has no [scrapy] settings entry point"},
		{"entry_points.txt declared 2^62 bytes", func() []byte {
			var b bytes.Buffer
			w, _ := flate.NewWriter(&b, flate.BestCompression)
			io.WriteString(w, entryPoints)
			w.Close()
			return zipOf(t, nil, rawMember{zip.FileHeader{Name: "EGG-INFO/entry_points.txt", CRC32: crc32.ChecksumIEEE([]byte(entryPoints)), UncompressedSize64: 1 << 62}, b.Bytes()})
		}, "entry_points.txt is 4611686018427387904 bytes"},
		{"2^62 entries claimed", func() []byte { return claimsEntries(t, 1<<62) }, "egg is not a ZIP file"},
		{"700,000 entries", func() []byte { return testkit.EmptyEntriesZip(32 << 20 / 47) }, "egg has too many files"},
		{"random bytes", func() []byte { return garbage }, "egg is not a ZIP file"},
		{"a zip signature and random bytes", func() []byte { return append([]byte("PK\x03\x04"), garbage...) }, "egg is not a ZIP file"},
		{"an empty file", func() []byte { return []byte{} }, "egg is not a ZIP file"},
	} {
		egg := c.egg()
		r := d.Upload(t, "hostile", "1.0", egg)
		msg, _ := r["message"].(string)
		if r["status"] != "error" || !strings.Contains(msg, c.want) {
			t.Errorf("%s (%d bytes): %v, want an error saying %q", c.name, len(egg), r, c.want)
		}
		stillBounded(t, d, c.name)
		eggsDirHolds(t, d)
	}
	if ps := toStrings(d.Get(t, "listprojects.json", nil)["projects"]); len(ps) != 0 {
		t.Fatalf("projects after hostile uploads: %q", ps)
	}
}

// TestBombEggMembersStayInside: an egg that is a real project plus hostile
// members (names climbing out with ../, absolute names, a backslash name,
// a member inflating to a GiB) is accepted as Scrapyd accepts it, since its
// spiders list; and nothing of it is extracted, neither by the daemon,
// which reads only the zip directory and entry_points.txt, nor by the
// listing and the crawl, which import from the zip in place.
func TestBombEggMembersStayInside(t *testing.T) {
	testkit.RequireScrapy(t)
	t.Parallel()
	// The crawl user may write into probe: were anything extracted there,
	// it would be found.
	probe, err := os.MkdirTemp("", "scrapyd-probe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(probe) })
	os.Chmod(probe, 0o777)
	b := make([]byte, 6)
	rand.Read(b)
	token := "escaped-" + hex.EncodeToString(b)

	sample := testkit.SampleEgg(t)
	zr, err := zip.NewReader(bytes.NewReader(sample), int64(len(sample)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		strings.Repeat("../", 16) + strings.TrimPrefix(probe, "/") + "/" + token + "-dotdot.txt": "x",
		probe + "/" + token + "-abs.txt":       "x",
		`..\..\` + token + "-backslash.txt":    "x",
		"sample/../../" + token + "-inner.txt": "x",
	}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = string(data)
	}
	egg := zipOf(t, files, gibBomb("sample/data/bomb.bin", "", 0))

	d := testkit.StartDaemon(t, testkit.Options{})
	r := d.Upload(t, "hostile", "1.0", egg)
	if r["status"] != "ok" || r["spiders"] == 0.0 {
		t.Fatalf("upload of a project with hostile members: %v", r)
	}
	stillBounded(t, d, "the upload")
	id := schedule(t, d, url.Values{"project": {"hostile"}, "spider": {"params"}})
	if fin := waitState(t, d, id, "finished"); fin["outcome"] != "finished" {
		t.Fatalf("crawl of the hostile egg: %v\n%s", fin, readFile(d.Path("var/log/scrapyd/hostile/params", id+".log")))
	}
	stillBounded(t, d, "the crawl")
	eggsDirHolds(t, d, "hostile")

	if ents, _ := os.ReadDir(probe); len(ents) != 0 {
		t.Errorf("files extracted into %s: %v", probe, ents)
	}
	for _, dir := range []string{d.Root, filepath.Dir(d.Root), os.TempDir()} {
		matches, _ := filepath.Glob(filepath.Join(dir, "*"+token+"*"))
		if len(matches) != 0 {
			t.Errorf("files extracted: %q", matches)
		}
	}
	filepath.WalkDir(d.Root, func(path string, e fs.DirEntry, err error) error {
		if err == nil && (strings.Contains(e.Name(), token) || e.Name() == "bomb.bin") {
			t.Errorf("extracted: %s", path)
		}
		return nil
	})
}

// TestCrawlUserCannotTouchDaemonState runs a hostile project's probe
// (packaging/testdata/intruder, which packaging/test-deb.sh runs in a
// sandboxed unit too) as plain child processes of a root daemon: without a
// sandbox, file ownership alone keeps the crawl user from the eggs, the job
// database and the daemon's log, while its own files stay writable.
func TestCrawlUserCannotTouchDaemonState(t *testing.T) {
	testkit.RequireScrapy(t)
	if os.Geteuid() != 0 {
		t.Skip("crawls run as another user only under a root daemon (CI runs as root)")
	}
	t.Parallel()
	egg, err := eggbuild.Build(eggbuild.Options{
		Dir: filepath.Join(testkit.RepoRoot(), "packaging", "testdata", "intruder"), Settings: "intruder.settings"})
	if err != nil {
		t.Fatal(err)
	}
	d := testkit.StartDaemon(t, testkit.Options{})
	if r := d.Upload(t, "sample", "r1", testkit.SampleEgg(t)); r["status"] != "ok" {
		t.Fatal(r)
	}
	if r := d.Upload(t, "intruder", "1", egg); r["status"] != "ok" {
		t.Fatal(r)
	}
	lib, logs, etc := d.Path("var/lib/scrapyd"), d.Path("var/log/scrapyd"), d.Path("etc/scrapyd")
	if err := os.MkdirAll(filepath.Join(etc, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	id := schedule(t, d, url.Values{"project": {"intruder"}, "spider": {"probe"},
		"lib": {lib}, "log": {logs}, "etc": {etc}, "other_egg": {filepath.Join(lib, "eggs/sample/r1.egg")}})
	if fin := waitState(t, d, id, "finished"); fin["outcome"] != "finished" {
		t.Fatalf("probe: %v\n%s", fin, readFile(filepath.Join(logs, "intruder/probe", id+".log")))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(readFile(filepath.Join(lib, "items/intruder/probe", id+".jl"))), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"write_eggs": "EACCES", "read_db": "EACCES", "rename_dbs": "EACCES", "write_daemon_log": "EACCES",
		"write_etc": "EACCES", "write_own_items": "ok", "write_httpcache": "ok",
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if uid, _ := got["uid"].(float64); uid == 0 {
		t.Error("the crawl ran as root")
	}
	if _, err := os.Stat(filepath.Join(lib, "dbs")); err != nil {
		t.Errorf("dbs: %v", err)
	}
}
