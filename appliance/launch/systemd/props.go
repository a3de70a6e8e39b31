package systemd

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/launch"
)

// errBadCommand wraps every Command the unit cannot be built from.
var errBadCommand = errors.New("systemd: bad command")

// properties turns cmd into the properties of its transient unit, as
// `systemd-run -p` would set them. It is pure, so that the unit's shape is
// unit-tested without systemd.
func properties(cmd launch.Command, o Options) ([]sddbus.Property, error) {
	if !filepath.IsAbs(cmd.Path) {
		return nil, fmt.Errorf("%w: executable %q is not absolute", errBadCommand, cmd.Path)
	}
	if cmd.Dir != "" && !filepath.IsAbs(cmd.Dir) {
		return nil, fmt.Errorf("%w: working directory %q is not absolute", errBadCommand, cmd.Dir)
	}
	desc := fmt.Sprintf("Scrapy crawl %s/%s, job %s", cmd.Project, cmd.Spider, cmd.Job)
	switch {
	case cmd.Spider == "" && cmd.Project == "":
		desc = fmt.Sprintf("Python environment install (%s)", cmd.Job)
	case cmd.Spider == "":
		desc = fmt.Sprintf("scrapy list of project %s (%s)", cmd.Project, cmd.Job)
	}
	props := []sddbus.Property{
		sddbus.PropDescription(desc),
		sddbus.PropSlice(o.Slice),
		// exec: the start job fails when the executable cannot be run, so
		// Start reports a bad python path instead of a crawl that "ran".
		sddbus.PropType("exec"),
		// Keep the unit after a clean exit, and (CollectMode=inactive) after a
		// failed one, until the launcher has read ExecMainStatus and releases
		// it. With CollectMode=inactive-or-failed the exit status would be
		// lost whenever a crawl ends while the daemon is down (an upgrade).
		sddbus.PropRemainAfterExit(true),
		prop("CollectMode", "inactive"),
		sddbus.PropExecStart(append([]string{cmd.Path}, cmd.Args...), false),
		prop("Environment", nonNil(cmd.Env)),
		prop("User", o.User.Name),
		prop("Group", o.User.Group),
		// Scrapy treats SIGINT like Ctrl-C: the first one closes the spider
		// gracefully (items flushed, stats written), as Scrapyd's cancel does.
		// mixed: only the main process gets it; helpers (a headless browser)
		// are killed at the end, after Scrapy had its chance to close them.
		prop("KillSignal", int32(syscall.SIGINT)),
		prop("KillMode", "mixed"),
		prop("NoNewPrivileges", true),
		output("StandardOutput", cmd.Stdout),
		output("StandardError", cmd.Stderr),
	}
	if cmd.Dir != "" {
		props = append(props, prop("WorkingDirectory", cmd.Dir))
	}
	if o.StopPost != nil && cmd.Spider != "" {
		if post := o.StopPost(); len(post) > 0 {
			props = append(props, stopPost(post))
		}
	}
	if o.StopTimeout > 0 {
		props = append(props, prop("TimeoutStopUSec", uint64(o.StopTimeout.Microseconds())))
	}
	l := cmd.Limits
	if l.MemoryMax > 0 {
		props = append(props, prop("MemoryMax", uint64(l.MemoryMax)))
	}
	if l.CPUQuota > 0 {
		// CPUQuota=100% is one CPU second per second.
		props = append(props, prop("CPUQuotaPerSecUSec", uint64(l.CPUQuota)*10_000))
	}
	if l.TasksMax > 0 {
		props = append(props, prop("TasksMax", uint64(l.TasksMax)))
	}
	if l.MaxRuntime > 0 {
		props = append(props, prop("RuntimeMaxUSec", uint64(l.MaxRuntime.Microseconds())))
	}
	return append(props, confinement(cmd.Sandbox)...), nil
}

// confinement is the crawl's sandbox: uploaded code sees the system
// read-only, writes only its own directories and a private /tmp, cannot
// read the egg store (except its own egg) or the job database, and loses
// what a crawl never needs (devices, kernel knobs, capabilities, other
// processes, foreign system calls). Each property is what systemd-run -p
// would send. Left out on purpose, because real crawls need them:
// MemoryDenyWriteExecute (JIT engines in headless browsers), PrivateNetwork
// and IP filters (crawls fetch the web; only an environment's install
// without a package index asks for them, with Sandbox.NoNetwork), ProcSubset=pid (browsers read
// /proc/meminfo), and RemoveIPC (all crawls share one user, so one crawl's
// end would remove the others' IPC objects).
func confinement(sb launch.Sandbox) []sddbus.Property {
	writable := slices.Clone(sb.Writable)
	for _, p := range sb.Optional {
		writable = append(writable, "-"+p) // "-": skipped when missing
	}
	props := []sddbus.Property{
		prop("ProtectSystem", "strict"),
		prop("ReadWritePaths", nonNil(writable)),
		prop("PrivateTmp", true),
		// read-only, not yes: a project deployed through [settings] may be
		// imported from under /home.
		prop("ProtectHome", "read-only"),
		prop("PrivateDevices", true),
		prop("PrivateIPC", true),
		prop("ProtectKernelTunables", true),
		prop("ProtectKernelModules", true),
		prop("ProtectKernelLogs", true),
		prop("ProtectControlGroups", true),
		prop("ProtectClock", true),
		prop("ProtectHostname", true),
		prop("ProtectProc", "invisible"),
		prop("RestrictSUIDSGID", true),
		prop("RestrictRealtime", true),
		prop("RestrictNamespaces", uint64(0)), // the set allowed: none
		prop("LockPersonality", true),
		prop("CapabilityBoundingSet", uint64(0)),
		prop("SystemCallArchitectures", []string{"native"}),
		prop("SystemCallFilter", allowList{true, []string{"@system-service"}}),
		prop("SystemCallErrorNumber", int32(syscall.EPERM)),
		// AF_NETLINK: glibc's getaddrinfo asks the kernel for the host's
		// addresses through it (AI_ADDRCONFIG).
		prop("RestrictAddressFamilies", allowList{true, []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}}),
	}
	if len(sb.Hidden) > 0 {
		hidden := make([]tmpfs, len(sb.Hidden))
		for i, d := range sb.Hidden {
			hidden[i] = tmpfs{Path: d, Options: "ro,mode=0755"}
		}
		props = append(props, prop("TemporaryFileSystem", hidden))
	}
	if sb.NoNetwork {
		// A private network namespace (loopback only), and no IP traffic
		// at all should the namespace be unavailable.
		props = append(props, prop("PrivateNetwork", true), prop("IPAddressDeny", []ipPrefix{{Family: syscall.AF_INET, Prefix: []byte{0, 0, 0, 0}}, {Family: syscall.AF_INET6, Prefix: make([]byte, 16)}}))
	}
	if len(sb.Exposed) > 0 {
		binds := make([]bind, len(sb.Exposed))
		for i, f := range sb.Exposed {
			binds[i] = bind{Source: f, Destination: f, Flags: syscall.MS_REC}
		}
		props = append(props, prop("BindReadOnlyPaths", binds))
	}
	return props
}

// stopPost is ExecStopPost=-argv (a(sasb): path, argv, ignore failure):
// a failed poke must not fail the crawl's unit.
func stopPost(argv []string) sddbus.Property {
	type execCommand struct {
		Path          string
		Args          []string
		IgnoreFailure bool
	}
	return prop("ExecStopPost", []execCommand{{argv[0], argv, true}})
}

// allowList is the D-Bus shape (bas) of SystemCallFilter= and
// RestrictAddressFamilies=: whether the list is allowed (or denied), and it.
type allowList struct {
	Allow bool
	List  []string
}

// ipPrefix is one IPAddressDeny= entry, D-Bus (iayu): "any" is 0.0.0.0/0
// and ::/0.
type ipPrefix struct {
	Family    int32
	Prefix    []byte
	PrefixLen uint32
}

// tmpfs is one TemporaryFileSystem= entry, D-Bus (ss).
type tmpfs struct{ Path, Options string }

// bind is one BindReadOnlyPaths= entry, D-Bus (ssbt).
type bind struct {
	Source, Destination string
	IgnoreMissing       bool
	Flags               uint64
}

// output is StandardOutput=append:FILE (systemd opens it before dropping
// privileges, so the crawl user needs no write access to the log directory
// for it), or null for "".
func output(name, file string) sddbus.Property {
	if file == "" {
		return prop(name, "null")
	}
	return prop(name+"FileToAppend", file)
}

func prop(name string, v any) sddbus.Property {
	return sddbus.Property{Name: name, Value: dbus.MakeVariant(v)}
}

// nonNil keeps the D-Bus signature "as" for an empty environment.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
