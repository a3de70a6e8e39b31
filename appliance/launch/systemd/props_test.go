package systemd

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
	"github.com/scrapyd-debian/scrapyd/appliance/launch/runas"
)

func TestProperties(t *testing.T) {
	cmd := launch.Command{
		Job: "j1", Project: "p", Spider: "s",
		Path: "/usr/bin/python3", Args: []string{"-m", "scrapyd_runner", "crawl", "s"},
		Env: []string{"A=1"}, Dir: "/var/lib/scrapyd",
		Stdout: "/var/log/scrapyd/p/s/j1.out",
		Limits: launch.Limits{MemoryMax: 512 << 20, CPUQuota: 150, TasksMax: 64, MaxRuntime: 2 * time.Hour},
	}
	o := Options{User: runas.User{Name: "scrapy", Group: "scrapy", UID: 100, GID: 100}, Slice: DefaultSlice, StopTimeout: 45 * time.Second}
	props, err := properties(cmd, o)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, p := range props {
		if _, dup := got[p.Name]; dup {
			t.Errorf("property %s set twice", p.Name)
		}
		got[p.Name] = p.Value.Value()
	}
	want := map[string]any{
		"Description":                "Scrapy crawl p/s, job j1",
		"Slice":                      "scrapyd-crawls.slice",
		"Type":                       "exec",
		"RemainAfterExit":            true,
		"CollectMode":                "inactive",
		"Environment":                []string{"A=1"},
		"User":                       "scrapy",
		"Group":                      "scrapy",
		"KillSignal":                 int32(2),
		"KillMode":                   "mixed",
		"NoNewPrivileges":            true,
		"StandardOutputFileToAppend": "/var/log/scrapyd/p/s/j1.out",
		"StandardError":              "null",
		"WorkingDirectory":           "/var/lib/scrapyd",
		"TimeoutStopUSec":            uint64(45_000_000),
		"MemoryMax":                  uint64(512 << 20),
		"CPUQuotaPerSecUSec":         uint64(1_500_000),
		"TasksMax":                   uint64(64),
		"RuntimeMaxUSec":             uint64(7_200_000_000),
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if _, ok := got["ExecStart"]; !ok {
		t.Error("no ExecStart")
	}
	sandbox := len(confinement(launch.Sandbox{}))
	if len(got) != len(want)+1+sandbox {
		t.Errorf("%d properties, want %d: %v", len(got), len(want)+1+sandbox, got)
	}
}

// TestConfinement checks the sandbox's values and their D-Bus signatures,
// which systemd checks strictly (a wrong one fails every crawl's start).
func TestConfinement(t *testing.T) {
	sb := launch.Sandbox{
		Writable: []string{"/var/log/scrapyd/p/s", "/run/scrapyd/crawlrpc/j1"},
		Optional: []string{"/srv/exports"},
		Hidden:   []string{"/var/lib/scrapyd/eggs", "/var/lib/scrapyd/dbs"},
		Exposed:  []string{"/var/lib/scrapyd/eggs/p/1.egg"},
	}
	props, err := properties(launch.Command{Job: "j1", Path: "/bin/true", Sandbox: sb}, Options{Slice: DefaultSlice})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		sig   string
		value any
	}
	wants := map[string]want{
		"ProtectSystem":           {"s", "strict"},
		"ReadWritePaths":          {"as", []string{"/var/log/scrapyd/p/s", "/run/scrapyd/crawlrpc/j1", "-/srv/exports"}},
		"PrivateTmp":              {"b", true},
		"ProtectHome":             {"s", "read-only"},
		"CapabilityBoundingSet":   {"t", uint64(0)},
		"RestrictNamespaces":      {"t", uint64(0)},
		"ProtectProc":             {"s", "invisible"},
		"SystemCallArchitectures": {"as", []string{"native"}},
		"SystemCallFilter":        {"(bas)", allowList{true, []string{"@system-service"}}},
		"RestrictAddressFamilies": {"(bas)", allowList{true, []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}}},
		"TemporaryFileSystem": {"a(ss)", []tmpfs{
			{"/var/lib/scrapyd/eggs", "ro,mode=0755"}, {"/var/lib/scrapyd/dbs", "ro,mode=0755"}}},
		"BindReadOnlyPaths": {"a(ssbt)", []bind{
			{"/var/lib/scrapyd/eggs/p/1.egg", "/var/lib/scrapyd/eggs/p/1.egg", false, 16384}}},
	}
	for _, p := range props {
		w, ok := wants[p.Name]
		if !ok {
			continue
		}
		delete(wants, p.Name)
		if sig := p.Value.Signature().String(); sig != w.sig {
			t.Errorf("%s has D-Bus signature %s, want %s", p.Name, sig, w.sig)
		}
		if !reflect.DeepEqual(p.Value.Value(), w.value) {
			t.Errorf("%s = %#v, want %#v", p.Name, p.Value.Value(), w.value)
		}
	}
	for name := range wants {
		t.Errorf("%s not set", name)
	}
	// No hidden directories: no empty TemporaryFileSystem= or bind list;
	// crawls fetch the web: no network cut.
	for _, p := range confinement(launch.Sandbox{}) {
		if p.Name == "TemporaryFileSystem" || p.Name == "BindReadOnlyPaths" || p.Name == "PrivateNetwork" || p.Name == "IPAddressDeny" {
			t.Errorf("%s set for an empty sandbox", p.Name)
		}
	}
}

// TestConfinementNoNetwork: an offline environment install gets a private
// network namespace and, in case that is unavailable, every address denied
// (IPAddressDeny=any is 0.0.0.0/0 and ::/0).
func TestConfinementNoNetwork(t *testing.T) {
	got := map[string]any{}
	sigs := map[string]string{}
	for _, p := range confinement(launch.Sandbox{NoNetwork: true}) {
		got[p.Name], sigs[p.Name] = p.Value.Value(), p.Value.Signature().String()
	}
	if got["PrivateNetwork"] != true {
		t.Errorf("PrivateNetwork = %v, want true", got["PrivateNetwork"])
	}
	want := []ipPrefix{{2, []byte{0, 0, 0, 0}, 0}, {10, make([]byte, 16), 0}}
	if sigs["IPAddressDeny"] != "a(iayu)" || !reflect.DeepEqual(got["IPAddressDeny"], want) {
		t.Errorf("IPAddressDeny = %s %#v, want a(iayu) %#v", sigs["IPAddressDeny"], got["IPAddressDeny"], want)
	}
}

func TestPropertiesUnlimited(t *testing.T) {
	props, err := properties(launch.Command{Job: "j", Path: "/bin/true"}, Options{Slice: DefaultSlice})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range props {
		switch p.Name {
		case "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax", "RuntimeMaxUSec", "TimeoutStopUSec", "WorkingDirectory":
			t.Errorf("%s set for a zero value", p.Name)
		case "Environment":
			if p.Value.Signature().String() != "as" {
				t.Errorf("Environment signature %s", p.Value.Signature())
			}
		}
	}
}

func TestPropertiesRefuses(t *testing.T) {
	for _, cmd := range []launch.Command{
		{Job: "j", Path: "python3"},
		{Job: "j", Path: "/usr/bin/python3", Dir: "relative"},
	} {
		if _, err := properties(cmd, Options{}); !errors.Is(err, errBadCommand) {
			t.Errorf("properties(%+v) = %v, want errBadCommand", cmd, err)
		}
	}
}

func TestDecode(t *testing.T) {
	zero, one := 0, 1
	for _, tc := range []struct {
		name      string
		unit, svc map[string]any
		ended     bool
		code      *int
		signal    int
		known     bool
	}{
		{"running", map[string]any{"ActiveState": "active", "SubState": "running"}, map[string]any{"MainPID": uint32(42)}, false, nil, 0, false},
		{"exited 0", map[string]any{"ActiveState": "active", "SubState": "exited"}, map[string]any{"ExecMainCode": int32(1), "ExecMainStatus": int32(0)}, true, &zero, 0, true},
		{"failed 1", map[string]any{"ActiveState": "failed", "SubState": "failed"}, map[string]any{"ExecMainCode": int32(1), "ExecMainStatus": int32(1)}, true, &one, 0, true},
		{"killed", map[string]any{"ActiveState": "failed"}, map[string]any{"ExecMainCode": int32(2), "ExecMainStatus": int32(9)}, true, nil, 9, true},
		{"stopping", map[string]any{"ActiveState": "deactivating", "SubState": "stop-sigterm"}, map[string]any{}, false, nil, 0, false},
		{"inactive, never ran", map[string]any{"ActiveState": "inactive"}, map[string]any{}, true, nil, 0, false},
	} {
		st := decode(tc.unit, tc.svc)
		e := st.exit
		if st.ended != tc.ended || e.Known != tc.known || int(e.Signal) != tc.signal ||
			(e.Code == nil) != (tc.code == nil) || (e.Code != nil && *e.Code != *tc.code) {
			t.Errorf("%s: decode = %+v (code %v)", tc.name, st, e.Code)
		}
	}
}

// TestStopPost: a crawl's unit pokes the wake socket when it stops, with
// the D-Bus signature systemd checks (a wrong one fails every start); a
// listing's unit does not (the daemon is awake, answering its request).
func TestStopPost(t *testing.T) {
	o := Options{Slice: DefaultSlice, StopPost: func() []string { return []string{"/usr/bin/scrapyd", "wake", "/run/scrapyd/wake.sock"} }}
	props, err := properties(launch.Command{Job: "j", Project: "p", Spider: "s", Path: "/bin/true"}, o)
	if err != nil {
		t.Fatal(err)
	}
	var post *dbus.Variant
	for _, p := range props {
		if p.Name == "ExecStopPost" {
			post = &p.Value
		}
	}
	if post == nil {
		t.Fatal("no ExecStopPost on a crawl's unit")
	}
	if sig := post.Signature().String(); sig != "a(sasb)" {
		t.Errorf("ExecStopPost signature %s, want a(sasb)", sig)
	}
	if got := fmt.Sprint(post.Value()); got != "[{/usr/bin/scrapyd [/usr/bin/scrapyd wake /run/scrapyd/wake.sock] true}]" {
		t.Errorf("ExecStopPost = %s", got)
	}
	props, _ = properties(launch.Command{Job: "l", Project: "p", Path: "/bin/true"}, o)
	for _, p := range props {
		if p.Name == "ExecStopPost" {
			t.Error("a listing's unit pokes the wake socket")
		}
	}
}

// TestWakeTimer: the timer a sleeping daemon leaves, with the names and
// D-Bus signatures systemd 252 takes (it refused OnActiveUSec as a base).
func TestWakeTimer(t *testing.T) {
	got := map[string]string{}
	for _, p := range wakeTimer(90 * time.Second) {
		got[p.Name] = p.Value.Signature().String() + " " + fmt.Sprint(p.Value.Value())
	}
	want := map[string]string{
		"Description":       "s Wake Scrapyd for its next recurring run",
		"TimersMonotonic":   "a(st) [{OnActiveSec 90000000}]",
		"AccuracyUSec":      "t 1000",
		"RemainAfterElapse": "b false",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("wake timer properties:\n got %v\nwant %v", got, want)
	}
}

// TestRanAndExited: a failed start job whose unit shows the process's own
// exit status is a crawl that ran (it exited before systemd saw its exec
// succeed); systemd's setup codes (203/EXEC: a wrong python path) and a
// unit that never ran are start failures.
func TestRanAndExited(t *testing.T) {
	failed := map[string]any{"ActiveState": "failed", "SubState": "failed"}
	for _, tc := range []struct {
		name   string
		result string
		code   int32
		status int32
		want   bool
	}{
		{"exit 3", "exit-code", 1, 3, true},
		{"exit 1", "exit-code", 1, 1, true},
		{"203/EXEC", "exit-code", 1, 203, false},
		{"200/CHDIR", "exit-code", 1, 200, false},
		{"killed", "signal", 2, 9, false},
		{"never ran", "resources", 0, 0, false},
	} {
		st := decode(failed, map[string]any{"Result": tc.result, "ExecMainCode": tc.code, "ExecMainStatus": tc.status})
		if got := ranAndExited(st); got != tc.want {
			t.Errorf("%s: ranAndExited = %v, want %v", tc.name, got, tc.want)
		}
	}
}
