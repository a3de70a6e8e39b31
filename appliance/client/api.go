package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// DaemonStatus is daemonstatus.json's answer.
type DaemonStatus struct {
	NodeName string `json:"node_name"`
	Pending  int    `json:"pending"`
	Running  int    `json:"running"`
	Finished int    `json:"finished"`
}

// DaemonStatus reports the number of jobs per state.
func (c *Client) DaemonStatus(ctx context.Context) (DaemonStatus, error) {
	var out DaemonStatus
	err := c.get(ctx, "daemonstatus.json", nil, &out)
	return out, err
}

// Diagnostics is diagnostics.json's answer: what this daemon reports about
// itself beyond Scrapyd's counts (Scrapyd itself has no such endpoint).
type Diagnostics struct {
	Launcher      string   `json:"launcher"`
	Version       string   `json:"version"`
	ConfigError   string   `json:"config_error"` // "" while the configuration is valid
	RestartNeeded []string `json:"restart_needed"`
	Warnings      []string `json:"warnings"`
	// Nodes are the cluster's nodes (cluster mode only; none otherwise).
	Nodes []Node `json:"nodes"`
}

// Node is one node of a cluster as diagnostics.json lists it.
type Node struct {
	Name       string  `json:"name"`
	Slots      int     `json:"slots"`   // its max_proc
	Running    int     `json:"running"` // the jobs it runs now
	Alive      bool    `json:"alive"`
	Lease      float64 `json:"lease"` // seconds
	LeaseUntil string  `json:"lease_until"`
	Version    string  `json:"version"`
	Stopped    bool    `json:"stopped"` // stopped cleanly, its crawls waiting for its next start
	Reaped     bool    `json:"reaped"`  // declared dead
}

// Diagnostics fetches diagnostics.json. Against a server without it (Scrapyd)
// the error is an *HTTPError with StatusCode 404.
func (c *Client) Diagnostics(ctx context.Context) (Diagnostics, error) {
	var out Diagnostics
	err := c.get(ctx, "diagnostics.json", nil, &out)
	return out, err
}

// Added is addversion.json's answer.
type Added struct {
	Project string `json:"project"`
	Version string `json:"version"`
	Spiders int    `json:"spiders"` // how many spiders the new version has
}

// AddVersion uploads an egg of size bytes as project/version. The egg is
// streamed; wrap it to observe upload progress.
func (c *Client) AddVersion(ctx context.Context, project, version string, egg io.Reader, size int64) (Added, error) {
	return c.AddVersionWith(ctx, project, version, egg, size, Deps{})
}

// Deps are what an upload asks the server to install into the version's
// own Python environment: a pip requirements file and a wheelhouse (a zip
// of .whl files); either may be empty.
type Deps struct {
	Requirements []byte
	Wheels       []byte
}

// AddVersionWith is AddVersion with the version's dependencies, sent as
// the "requirements" and "wheels" file parts before the egg.
func (c *Client) AddVersionWith(ctx context.Context, project, version string, egg io.Reader, size int64, deps Deps) (Added, error) {
	// The multipart framing is built around the egg so that the request has
	// a Content-Length: not every server accepts a chunked upload.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("project", project); err != nil {
		return Added{}, fmt.Errorf("client: %w", err)
	}
	if err := mw.WriteField("version", version); err != nil {
		return Added{}, fmt.Errorf("client: %w", err)
	}
	for _, part := range []struct {
		name, file string
		data       []byte
	}{{"requirements", "requirements.txt", deps.Requirements}, {"wheels", "wheels.zip", deps.Wheels}} {
		if len(part.data) == 0 {
			continue
		}
		w, err := mw.CreateFormFile(part.name, part.file)
		if err == nil {
			_, err = w.Write(part.data)
		}
		if err != nil {
			return Added{}, fmt.Errorf("client: %w", err)
		}
	}
	h := textproto.MIMEHeader{}
	// The same file name scrapyd-deploy sends.
	h.Set("Content-Disposition", `form-data; name="egg"; filename="project.egg"`)
	h.Set("Content-Type", "application/octet-stream")
	if _, err := mw.CreatePart(h); err != nil {
		return Added{}, fmt.Errorf("client: %w", err)
	}
	head := bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := mw.Close(); err != nil {
		return Added{}, fmt.Errorf("client: %w", err)
	}
	tail := buf.Bytes()
	var out Added
	err := c.call(ctx, request{
		method:      http.MethodPost,
		ref:         "addversion.json",
		body:        io.MultiReader(bytes.NewReader(head), io.LimitReader(egg, size), bytes.NewReader(tail)),
		size:        int64(len(head)) + size + int64(len(tail)),
		contentType: mw.FormDataContentType(),
	}, &out)
	return out, err
}

// reservedParams are schedule.json's own parameters: a spider argument with
// one of these names would be taken by Scrapyd as the parameter instead.
var reservedParams = map[string]bool{
	"project": true, "spider": true, "setting": true, "jobid": true, "priority": true, "_version": true,
}

// Schedule queues a crawl and returns its job id. From spec it sends
// Project, Spider, and when set Version, ID (jobid), Priority, Settings
// and Args.
func (c *Client) Schedule(ctx context.Context, spec job.Spec) (string, error) {
	form := url.Values{"project": {spec.Project}, "spider": {spec.Spider}}
	if spec.Version != "" {
		form.Set("_version", spec.Version)
	}
	if spec.ID != "" {
		form.Set("jobid", spec.ID)
	}
	if spec.Priority != 0 {
		form.Set("priority", strconv.FormatFloat(spec.Priority, 'g', -1, 64))
	}
	for _, s := range spec.Settings {
		if s.Name == "" {
			return "", errors.New("client: a setting needs a name")
		}
		form.Add("setting", s.Name+"="+s.Value)
	}
	for _, a := range spec.Args {
		if reservedParams[a.Name] || a.Name == "" {
			return "", fmt.Errorf("client: %q cannot be a spider argument: schedule.json uses that name", a.Name)
		}
		if form.Has(a.Name) {
			// Scrapyd keeps only the first value of a repeated argument.
			return "", fmt.Errorf("client: spider argument %q given twice", a.Name)
		}
		form.Set(a.Name, a.Value)
	}
	var out struct {
		JobID string `json:"jobid"`
	}
	err := c.post(ctx, "schedule.json", form, &out)
	return out.JobID, err
}

// Cancel stops a pending or running job and returns the state it was in:
// "" when it was neither. An empty signal means the server's default (INT).
func (c *Client) Cancel(ctx context.Context, project, jobID, signal string) (job.State, error) {
	form := url.Values{"project": {project}, "job": {jobID}}
	if signal != "" {
		form.Set("signal", signal)
	}
	var out struct {
		PrevState job.State `json:"prevstate"`
	}
	err := c.post(ctx, "cancel.json", form, &out)
	return out.PrevState, err
}

// JobStatus is status.json's answer. Outcome and ExitCode are this daemon's
// additions for finished jobs; Python Scrapyd leaves them empty.
type JobStatus struct {
	State    job.State   `json:"currstate"` // "" for an unknown job
	Outcome  job.Outcome `json:"outcome"`
	ExitCode *int        `json:"exit_code"`
}

// Status returns a job's state; project may be empty.
func (c *Client) Status(ctx context.Context, jobID, project string) (JobStatus, error) {
	q := url.Values{"job": {jobID}}
	if project != "" {
		q.Set("project", project)
	}
	var out JobStatus
	err := c.get(ctx, "status.json", q, &out)
	return out, err
}

// ListProjects returns the projects, in the server's order.
func (c *Client) ListProjects(ctx context.Context) ([]string, error) {
	var out struct {
		Projects []string `json:"projects"`
	}
	err := c.get(ctx, "listprojects.json", nil, &out)
	return out.Projects, err
}

// ListVersions returns a project's versions, oldest first: the last one is
// what new crawls run.
func (c *Client) ListVersions(ctx context.Context, project string) ([]string, error) {
	var out struct {
		Versions []string `json:"versions"`
	}
	err := c.get(ctx, "listversions.json", url.Values{"project": {project}}, &out)
	return out.Versions, err
}

// ListSpiders returns the spiders of a project version ("" for the latest).
func (c *Client) ListSpiders(ctx context.Context, project, version string) ([]string, error) {
	q := url.Values{"project": {project}}
	if version != "" {
		q.Set("_version", version)
	}
	var out struct {
		Spiders []string `json:"spiders"`
	}
	err := c.get(ctx, "listspiders.json", q, &out)
	return out.Spiders, err
}

// Job is one entry of listjobs.json. Which fields are set depends on the
// state, as in Scrapyd: Version, Settings and Args for pending jobs; PID for
// running ones; EndTime, Outcome and ExitCode for finished ones. Times are
// the server's naive local time, "YYYY-MM-DD HH:MM:SS.ffffff".
type Job struct {
	State     job.State         `json:"-"` // which list the entry came from
	ID        string            `json:"id"`
	Project   string            `json:"project"`
	Spider    string            `json:"spider"`
	Version   string            `json:"version"`
	Settings  map[string]string `json:"settings"`
	Args      map[string]string `json:"args"`
	PID       int               `json:"pid"`
	StartTime string            `json:"start_time"`
	EndTime   string            `json:"end_time"`
	LogURL    string            `json:"log_url"`   // "" when there is no log file
	ItemsURL  string            `json:"items_url"` // "" when there is no items file
	Outcome   job.Outcome       `json:"outcome"`
	ExitCode  *int              `json:"exit_code"`
	// This daemon's additions (issue 16): the recurring schedule that made
	// the job, when its run was due and its retry number; for a pending
	// job, the slot cap it waits for.
	Schedule string `json:"schedule"`
	DueTime  string `json:"due_time"`
	Attempt  int    `json:"attempt"`
	Waiting  string `json:"waiting"`
	// Node is the node that runs or ran the job (cluster mode; "" for a
	// pending job, and on a single node).
	Node string `json:"node_name"`
}

// Jobs is listjobs.json's answer.
type Jobs struct {
	Pending  []Job `json:"pending"`
	Running  []Job `json:"running"`
	Finished []Job `json:"finished"`
}

// All returns every job: pending, then running, then finished.
func (j Jobs) All() []Job {
	return append(append(append([]Job(nil), j.Pending...), j.Running...), j.Finished...)
}

// ListJobs returns the jobs of a project, or of all projects when project is "".
func (c *Client) ListJobs(ctx context.Context, project string) (Jobs, error) {
	var q url.Values
	if project != "" {
		q = url.Values{"project": {project}}
	}
	var out Jobs
	if err := c.get(ctx, "listjobs.json", q, &out); err != nil {
		return Jobs{}, err
	}
	setState(out.Pending, job.Pending)
	setState(out.Running, job.Running)
	setState(out.Finished, job.Finished)
	return out, nil
}

func setState(jobs []Job, s job.State) {
	for i := range jobs {
		jobs[i].State = s
	}
}

// ErrJobNotFound is returned by FindJob when no list has the job.
var ErrJobNotFound = errors.New("job not found")

// FindJob looks a job up in listjobs.json (project may be ""). A job id
// reused across states is reported in its most advanced state, as
// status.json does.
func (c *Client) FindJob(ctx context.Context, project, jobID string) (Job, error) {
	jobs, err := c.ListJobs(ctx, project)
	if err != nil {
		return Job{}, err
	}
	for _, list := range [][]Job{jobs.Finished, jobs.Running, jobs.Pending} {
		for _, j := range list {
			if j.ID == jobID {
				return j, nil
			}
		}
	}
	return Job{}, fmt.Errorf("%w: %s", ErrJobNotFound, jobID)
}

// DelVersion deletes one version of a project.
func (c *Client) DelVersion(ctx context.Context, project, version string) error {
	return c.post(ctx, "delversion.json", url.Values{"project": {project}, "version": {version}}, nil)
}

// DelProject deletes a project and all its versions.
func (c *Client) DelProject(ctx context.Context, project string) error {
	return c.post(ctx, "delproject.json", url.Values{"project": {project}}, nil)
}

// Fetch returns a file the server publishes (a job's LogURL or ItemsURL,
// or a path such as "/logs/p/s/j.log") from byte offset on, using an HTTP
// Range request as Gerapy does. Nothing new past the end is not an error:
// it returns no bytes.
func (c *Client) Fetch(ctx context.Context, path string, offset int64) ([]byte, error) {
	r := request{method: http.MethodGet, ref: path, accept: []int{http.StatusRequestedRangeNotSatisfiable}}
	if offset > 0 {
		r.header = http.Header{"Range": {fmt.Sprintf("bytes=%d-", offset)}}
	}
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		return nil, nil
	}
	if offset > 0 && resp.StatusCode != http.StatusPartialContent {
		// The server ignored the Range header and sent the whole file.
		if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
			return nil, nil // the file is shorter than offset: it was replaced
		}
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, c.unreachable(err)
	}
	return data, nil
}
