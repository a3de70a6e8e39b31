package api

import (
	"strconv"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

type endpoint struct {
	name   string
	method string // GET or POST
	fn     func(c *fiber.Ctx, p *params) (obj, error)
	upload bool // its "egg" is staged to disk as it is read
}

type handlers struct{ o Options }

func (a *handlers) endpoints() []endpoint {
	return []endpoint{
		{"daemonstatus.json", fiber.MethodGet, a.daemonStatus, false},
		{"addversion.json", fiber.MethodPost, a.addVersion, true},
		{"schedule.json", fiber.MethodPost, a.schedule, false},
		{"cancel.json", fiber.MethodPost, a.cancel, false},
		{"status.json", fiber.MethodGet, a.status, false},
		{"listprojects.json", fiber.MethodGet, a.listProjects, false},
		{"listversions.json", fiber.MethodGet, a.listVersions, false},
		{"listspiders.json", fiber.MethodGet, a.listSpiders, false},
		{"listjobs.json", fiber.MethodGet, a.listJobs, false},
		{"delversion.json", fiber.MethodPost, a.delVersion, false},
		{"delproject.json", fiber.MethodPost, a.delProject, false},
		// Ours: the eleven above gain no top-level keys (issue 13).
		{"diagnostics.json", fiber.MethodGet, a.diagnostics, false},
		{"addschedule.json", fiber.MethodPost, a.addSchedule, false},
		{"listschedules.json", fiber.MethodGet, a.listSchedules, false},
		{"delschedule.json", fiber.MethodPost, a.changeSchedule("delete"), false},
		{"pauseschedule.json", fiber.MethodPost, a.changeSchedule("pause"), false},
		{"resumeschedule.json", fiber.MethodPost, a.changeSchedule("resume"), false},
	}
}

// allow is each method group's Allow header; Twisted's order.
var allow = map[string]string{
	fiber.MethodGet:  "OPTIONS, HEAD, GET",
	fiber.MethodPost: "OPTIONS, HEAD, POST",
}

// unsupported is Twisted's UnsupportedMethod text, bytes repr included.
var unsupported = map[string]string{
	fiber.MethodGet:  "UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'GET']",
	fiber.MethodPost: "UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'POST']",
}

func allowFor(c *fiber.Ctx) string {
	if a, ok := c.Locals("allow").(string); ok {
		return a
	}
	return allow[fiber.MethodGet]
}

func (a *handlers) serve(c *fiber.Ctx, e endpoint) error {
	c.Locals("allow", allow[e.method])
	m := c.Method()
	switch {
	case m == fiber.MethodOptions:
		c.Set(fiber.HeaderAllow, allow[e.method])
		setCORS(c, allow[e.method])
		return c.SendStatus(fiber.StatusNoContent)
	case m == e.method || m == fiber.MethodHead && e.method == fiber.MethodGet:
	default:
		return &service.Error{Message: unsupported[e.method]}
	}
	var receive receiver
	if e.upload {
		receive = a.o.Service
	}
	p, err := readParams(c, receive)
	if err != nil {
		return err
	}
	defer p.close()
	body, err := e.fn(c, p)
	if err != nil {
		return err
	}
	return writeJSON(c, a.o.Config(), allow[e.method], append(body, kv{"status", "ok"}))
}

func setCORS(c *fiber.Ctx, methods string) {
	c.Set(fiber.HeaderAccessControlAllowOrigin, "*")
	c.Set(fiber.HeaderAccessControlAllowMethods, methods)
	c.Set(fiber.HeaderAccessControlAllowHeaders, "X-Requested-With")
}

// encodeBuffers are reused between answers: listjobs.json's can be hundreds
// of KB, and growing a new buffer to that size cost more than encoding it.
var encodeBuffers = sync.Pool{New: func() any { return new([]byte) }}

// writeJSON sends body plus node_name, with Scrapyd's headers and trailing
// newline.
func writeJSON(c *fiber.Ctx, cfg *config.Config, methods string, body obj) error {
	buf := encodeBuffers.Get().(*[]byte)
	defer encodeBuffers.Put(buf)
	*buf = append(encode((*buf)[:0], append(body, kv{"node_name", cfg.NodeName})), '\n')
	c.Set(fiber.HeaderContentType, "application/json")
	setCORS(c, methods)
	// SetBody copies into fasthttp's own (pooled) buffer, so ours can go back.
	c.Status(fiber.StatusOK).Response().SetBody(*buf)
	return nil
}

// daemonStatus answers exactly Scrapyd's keys, in Scrapyd's order: its
// integration suite compares the whole answer. Ours are in diagnostics.json.
func (a *handlers) daemonStatus(c *fiber.Ctx, p *params) (obj, error) {
	pending, running, finished := a.o.Service.DaemonStatus()
	return obj{{"pending", pending}, {"running", running}, {"finished", finished}}, nil
}

// diagnostics is what daemonstatus.json used to add to Scrapyd's answer:
// config_error is null while the configuration files are valid. In
// cluster mode, nodes lists every node of the cluster (its slots, running
// jobs, lease, version); daemonstatus.json counts the whole cluster.
func (a *handlers) diagnostics(c *fiber.Ctx, p *params) (obj, error) {
	d := a.o.Service.Diagnostics()
	var configError any
	if d.ConfigError != "" {
		configError = d.ConfigError
	}
	out := obj{{"launcher", d.Launcher}, {"version", d.Version}, {"config_error", configError},
		{"restart_needed", nonNil(d.RestartNeeded)}, {"warnings", nonNil(d.Warnings)}}
	nodes, cluster, err := a.o.Service.Nodes(c.UserContext())
	if err != nil {
		return nil, err
	}
	if cluster {
		list := make([]obj, len(nodes))
		for i, n := range nodes {
			list[i] = obj{{"name", n.Name}, {"slots", n.Slots}, {"running", n.Running}, {"alive", n.Alive},
				{"lease", n.Lease.Seconds()}, {"lease_until", pyTime(n.LeaseUntil)}, {"version", n.Version},
				{"advertise_url", n.AdvertiseURL}, {"started", pyTime(n.Started)}, {"stopped", n.Stopped}, {"reaped", n.Reaped}}
		}
		out = append(out, kv{"nodes", list})
	}
	return out, nil
}

func (a *handlers) addVersion(c *fiber.Ctx, p *params) (obj, error) {
	pv, err := p.requiredAll("project", "version")
	if err != nil {
		return nil, err
	}
	project, version := pv[0], pv[1]
	up, ok, err := p.upload(project, a.o.Service)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, service.Required("egg")
	}
	// Optional: a pip requirements file and a wheelhouse installed with the
	// egg into the version's own environment.
	if up.Deps.Requirements, err = p.optional("requirements"); err != nil {
		return nil, err
	}
	up.Deps.Wheels = p.wheels
	n, err := a.o.Service.AddVersion(c.UserContext(), project, version, up)
	if err != nil {
		return nil, err
	}
	return obj{{"project", project}, {"version", version}, {"spiders", n}}, nil
}

// reserved are schedule.json's own parameters; every other one is a spider
// argument.
var reserved = map[string]bool{"project": true, "spider": true, "setting": true, "jobid": true, "priority": true, "_version": true, "_job": true}

func (a *handlers) schedule(c *fiber.Ctx, p *params) (obj, error) {
	r, err := scheduleRequest(p, reserved)
	if err != nil {
		return nil, err
	}
	id, err := a.o.Service.Schedule(c.UserContext(), r)
	if err != nil {
		return nil, err
	}
	return obj{{"jobid", id}}, nil
}

// scheduleRequest reads schedule.json's parameters; every one not in own
// is a spider argument.
func scheduleRequest(p *params, own map[string]bool) (service.ScheduleRequest, error) {
	var r service.ScheduleRequest
	var err error
	if r.Project, err = p.required("project"); err != nil {
		return r, err
	}
	if r.Spider, err = p.required("spider"); err != nil {
		return r, err
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"_version", &r.Version}, {"jobid", &r.JobID}, {"priority", &r.Priority}} {
		if *f.dst, err = p.optional(f.name); err != nil {
			return r, err
		}
	}
	if r.Settings, err = p.all("setting"); err != nil {
		return r, err
	}
	for _, k := range p.keys {
		if own[k] {
			continue
		}
		v, _, err := p.get(k)
		if err != nil {
			return r, err
		}
		if err := checkUTF8("argument name", k); err != nil {
			return r, err
		}
		r.Args = append(r.Args, job.Pair{Name: k, Value: v})
	}
	return r, nil
}

func (a *handlers) cancel(c *fiber.Ctx, p *params) (obj, error) {
	pj, err := p.requiredAll("project", "job")
	if err != nil {
		return nil, err
	}
	project, id := pj[0], pj[1]
	sig, err := p.optional("signal")
	if err != nil {
		return nil, err
	}
	prev, err := a.o.Service.Cancel(c.UserContext(), project, id, sig)
	if err != nil {
		return nil, err
	}
	return obj{{"prevstate", stateOrNil(prev)}}, nil
}

func stateOrNil(s job.State) any {
	if s == "" {
		return nil
	}
	return string(s)
}

func (a *handlers) status(c *fiber.Ctx, p *params) (obj, error) {
	id, err := p.required("job")
	if err != nil {
		return nil, err
	}
	project, err := p.optional("project")
	if err != nil {
		return nil, err
	}
	j, err := a.o.Service.Status(c.UserContext(), id, project)
	if err != nil {
		return nil, err
	}
	if j == nil {
		return obj{{"currstate", nil}}, nil
	}
	out := obj{{"currstate", string(j.State)}}
	if j.State == job.Finished {
		out = append(out, kv{"outcome", string(j.Outcome)}, kv{"exit_code", j.ExitCode})
	}
	return out, nil
}

func (a *handlers) listProjects(c *fiber.Ctx, p *params) (obj, error) {
	projects, err := a.o.Service.Projects()
	if err != nil {
		return nil, err
	}
	return obj{{"projects", nonNil(projects)}}, nil
}

func (a *handlers) listVersions(c *fiber.Ctx, p *params) (obj, error) {
	project, err := p.required("project")
	if err != nil {
		return nil, err
	}
	vs, err := a.o.Service.Versions(project)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
	}
	return obj{{"versions", names}}, nil
}

func (a *handlers) listSpiders(c *fiber.Ctx, p *params) (obj, error) {
	project, err := p.required("project")
	if err != nil {
		return nil, err
	}
	version, err := p.optional("_version")
	if err != nil {
		return nil, err
	}
	names, err := a.o.Service.Spiders(c.UserContext(), project, version)
	if err != nil {
		return nil, err
	}
	return obj{{"spiders", nonNil(names)}}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *handlers) listJobs(c *fiber.Ctx, p *params) (obj, error) {
	var q service.JobsQuery
	var err error
	if q.Project, err = p.optional("project"); err != nil {
		return nil, err
	}
	state, err := p.optional("state")
	if err != nil {
		return nil, err
	}
	cluster := a.o.Config().Database != ""
	if cluster {
		// One node's crawls; a single node has only its own, so there the
		// parameter is ignored, as Scrapyd ignores what it does not know.
		if q.Node, err = p.optional("node"); err != nil {
			return nil, err
		}
	}
	switch job.State(state) {
	case "", job.Pending, job.Running, job.Finished:
		q.State = job.State(state)
	default:
		return nil, service.Invalid("state", strconv.Quote(state)+" is not pending, running or finished")
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"limit", &q.Limit}, {"offset", &q.Offset}} {
		raw, err := p.optional(f.name)
		if err != nil || raw == "" {
			continue
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return nil, service.Invalid(f.name, strconv.Quote(raw)+" is not a non-negative whole number")
		}
		*f.dst = n
	}
	l, err := a.o.Service.Jobs(c.UserContext(), q)
	if err != nil {
		return nil, err
	}
	return obj{{"pending", pendingEntries(l.Pending)}, {"running", a.runningEntries(l.Running, cluster)}, {"finished", finishedEntries{l.Finished, cluster}}}, nil
}

// withNode adds, in cluster mode, the node that runs or ran the job (a
// single node's entries stay Scrapyd's, byte for byte): null when none is
// recorded. Pending entries have none: a pending job is no node's until
// one claims it.
func withNode(o obj, e service.Entry, cluster bool) obj {
	if cluster {
		var node any
		if e.Node != "" {
			node = e.Node
		}
		o = append(o, kv{"node_name", node})
	}
	return o
}

func pendingEntries(es []service.Entry) []obj {
	out := make([]obj, len(es))
	for i, e := range es {
		var version any
		if e.Version != "" {
			version = e.Version
		}
		out[i] = append(withEnv(obj{{"id", e.ID}, {"project", e.Project}, {"spider", e.Spider}, {"version", version},
			{"settings", pairs(e.Settings)}, {"args", pairs(e.Args)}}, e), scheduled(e)...)
		if e.Waiting != "" {
			out[i] = append(out[i], kv{"waiting", e.Waiting})
		}
	}
	return out
}

// withEnv adds the job's environment to its entry, only for a version
// uploaded with requirements: other entries stay Scrapyd's, byte for byte.
func withEnv(o obj, e service.Entry) obj {
	if e.Env != "" {
		o = append(o, kv{"env", e.Env})
	}
	return o
}

func (a *handlers) runningEntries(es []service.Entry, cluster bool) []obj {
	out := make([]obj, len(es))
	for i, e := range es {
		var pid any
		if e.PID != 0 {
			pid = e.PID
		}
		out[i] = withEnv(withNode(obj{{"id", e.ID}, {"project", e.Project}, {"spider", e.Spider}, {"pid", pid},
			{"start_time", pyTime(e.Started)}, {"log_url", urlOrNil(e.LogURL)}, {"items_url", urlOrNil(e.ItemsURL)}}, e, cluster), e)
		out[i] = append(append(out[i], spec(e)...), scheduled(e)...)
		if a.o.Running != nil {
			for _, f := range a.o.Running(e.ID) {
				out[i] = append(out[i], kv{f.Key, f.Value})
			}
		}
	}
	return out
}

// finishedEntries is listjobs.json's finished section, which can hold
// thousands of jobs: it is encoded straight into the answer.
type finishedEntries struct {
	es      []service.Entry
	cluster bool
}

func (f finishedEntries) appendJSON(b []byte) []byte {
	return encodeList(b, f.es, func(b []byte, e service.Entry) []byte {
		return encode(b, append(withEnv(withNode(obj{{"id", e.ID}, {"project", e.Project}, {"spider", e.Spider},
			{"start_time", pyTime(e.Started)}, {"end_time", pyTime(e.Ended)},
			{"log_url", urlOrNil(e.LogURL)}, {"items_url", urlOrNil(e.ItemsURL)},
			{"outcome", string(e.Outcome)}, {"exit_code", e.ExitCode}}, e, f.cluster), e), append(spec(e), scheduled(e)...)...))
	})
}

// spec is what a running or finished entry adds so that the job can be
// run again as it was (scrapydctl rerun): its version, settings and
// arguments, each only when it has one, so that a plain job's entry stays
// Scrapyd's. Pending entries have them all, as in Scrapyd.
func spec(e service.Entry) obj {
	var o obj
	if e.Version != "" {
		o = append(o, kv{"version", e.Version})
	}
	if len(e.Settings) > 0 {
		o = append(o, kv{"settings", pairs(e.Settings)})
	}
	if len(e.Args) > 0 {
		o = append(o, kv{"args", pairs(e.Args)})
	}
	return o
}

// scheduled is what an entry adds when a recurring schedule made the job
// (issue 16): the schedule's id, the time the run was due, and its retry
// number. Other jobs' entries are Scrapyd's.
func scheduled(e service.Entry) obj {
	if e.Schedule == "" {
		return nil
	}
	return obj{{"schedule", e.Schedule}, {"due_time", pyTime(e.Due)}, {"attempt", e.Attempt}}
}

// pairs renders settings or arguments as a JSON object; a repeated name
// keeps its last value, as Python's dict() does.
func pairs(ps []job.Pair) obj {
	out := obj{}
	index := map[string]int{}
	for _, p := range ps {
		if i, ok := index[p.Name]; ok {
			out[i].v = p.Value
			continue
		}
		index[p.Name] = len(out)
		out = append(out, kv{p.Name, p.Value})
	}
	return out
}

func urlOrNil(u string) any {
	if u == "" {
		return nil
	}
	return u
}

func (a *handlers) delVersion(c *fiber.Ctx, p *params) (obj, error) {
	pv, err := p.requiredAll("project", "version")
	if err != nil {
		return nil, err
	}
	return obj{}, a.o.Service.DeleteVersion(pv[0], pv[1])
}

func (a *handlers) delProject(c *fiber.Ctx, p *params) (obj, error) {
	project, err := p.required("project")
	if err != nil {
		return nil, err
	}
	return obj{}, a.o.Service.DeleteProject(project)
}
