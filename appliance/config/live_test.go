package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func load(t *testing.T, o Options) *Config {
	t.Helper()
	c, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRestartOnlyOptions pins which options wait for a restart; the README's
// table of live and restart options says the same.
func TestRestartOnlyOptions(t *testing.T) {
	var got []string
	for _, k := range Names() {
		if why, ok := RestartOnly(k); ok {
			if why == "" {
				t.Errorf("%s: no reason given", k)
			}
			got = append(got, k)
		}
	}
	want := []string{"advertise_url", "bind_address", "crawl_user", "database", "database_password_file", "dbs_dir", "eggs_dir", "envs_dir", "http_port", "launcher", "log_file",
		"lost_jobs", "node_lease", "runtime_dir", "tls_cert", "tls_key", "unix_socket_path", "upload_limit"}
	if !slices.Equal(got, want) {
		t.Fatalf("restart-only options:\n got  %q\n want %q", got, want)
	}
}

func TestLiveKeepsRestartOnlyValues(t *testing.T) {
	root := t.TempDir()
	o := opts(root)
	conf := filepath.Join(root, "etc/scrapyd/conf.d/20-limits.conf")
	write(t, conf, "[scrapyd]\nmax_proc = 2\n")
	running := load(t, o)
	write(t, conf, "[scrapyd]\nmax_proc = 16\ndbs_dir = /srv/dbs\nhttp_port = 7000\nusername = u\npassword = p\nfinished_to_keep = 3\n")
	loaded := load(t, o)

	next, pending, err := Live(running, loaded)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"dbs_dir", "http_port"}; !slices.Equal(pending, want) {
		t.Errorf("pending = %q, want %q", pending, want)
	}
	if next.DbsDir != running.DbsDir || next.HTTPPort != running.HTTPPort || next.Sources["dbs_dir"] != running.Sources["dbs_dir"] || next.Raw["http_port"] != running.Raw["http_port"] {
		t.Errorf("restart-only values not kept: dbs_dir=%q (%v) http_port=%d", next.DbsDir, next.Sources["dbs_dir"], next.HTTPPort)
	}
	if next.MaxProc != 16 || !next.AuthEnabled() || next.FinishedToKeep != 3 {
		t.Errorf("live values not applied: max_proc=%d auth=%v finished_to_keep=%d", next.MaxProc, next.AuthEnabled(), next.FinishedToKeep)
	}
	if loaded.DbsDir != "/srv/dbs" || loaded.Sources["dbs_dir"].Line != 3 {
		t.Errorf("Live modified its input: %q %v", loaded.DbsDir, loaded.Sources["dbs_dir"])
	}
	if got, want := Changed(running, next), []string{"finished_to_keep", "max_proc", "password", "username"}; !slices.Equal(got, want) {
		t.Errorf("Changed = %q, want %q", got, want)
	}

	same, pending, err := Live(running, load(t, o))
	if err != nil || !slices.Equal(pending, []string{"dbs_dir", "http_port"}) || !reflect.DeepEqual(same, next) {
		t.Errorf("a second identical load differs: %v %q", err, pending)
	}
	write(t, conf, "[scrapyd]\nmax_proc = 2\n")
	same, pending, err = Live(running, load(t, o))
	if err != nil || len(pending) != 0 || !reflect.DeepEqual(same, running) {
		t.Errorf("reverting the file does not give the running snapshot back: %v %q", err, pending)
	}
}

// TestLiveRevalidates: a live value can clash with a kept restart-only one.
func TestLiveRevalidates(t *testing.T) {
	root := t.TempDir()
	o := opts(root)
	running := load(t, o)
	conf := filepath.Join(root, "etc/scrapyd/conf.d/20-dirs.conf")
	write(t, conf, "[scrapyd]\neggs_dir = /srv/eggs\nlogs_dir = "+running.EggsDir+"\n")
	_, _, err := Live(running, load(t, o))
	if err == nil || !strings.Contains(err.Error(), "is the same directory as eggs_dir") || !strings.Contains(err.Error(), "[eggs_dir]") {
		t.Fatalf("err = %v", err)
	}
}
