package systemd

import (
	"errors"
	"fmt"
	"path/filepath"
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
	return props, nil
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
