package metrics

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/store"
)

// alertsFile is the sample rule file the package installs under
// /usr/share/doc/scrapyd/examples (nfpm.yaml).
const alertsFile = "../../packaging/prometheus/scrapyd-alerts.yml"

// ruleFile is Prometheus's rule file format; unknown keys are refused.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// exported is every metric name /metrics shows once each kind of thing
// has happened, with a histogram's series names.
func exported(t *testing.T) map[string]bool {
	m := New(Options{Jobs: fakeJobs{{Project: "p", State: job.Pending, Jobs: 1}}, Slots: func() (int, int) { return 1, 1 },
		Running: func(context.Context) []Live { return []Live{{Job: "j", Project: "p", Spider: "s"}} }})
	t0 := time.Now()
	m.JobStarted(Started{Project: "p", Spider: "s", Scheduled: t0, Started: t0})
	m.JobFinished(Finished{Job: "k", Project: "p", Spider: "s", Outcome: job.OutcomeFinished, Started: t0, Ended: t0})
	m.Request("/", 200, time.Millisecond)
	m.Reloaded(nil)
	m.Seed([]store.SpiderSuccess{{Project: "p", Spider: "t", Ended: t0}})
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

// The sample alerts parse as a Prometheus rule file, say what they are
// for, and use only metrics, outcomes and states that scrapyd exports;
// with promtool installed (Debian's prometheus package), it checks them
// too.
func TestSampleAlerts(t *testing.T) {
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	names := exported(t)
	metricRe := regexp.MustCompile(`\bscrapyd_[a-z_]+\b`)
	outcomeRe := regexp.MustCompile(`outcome=~?"([^"]*)"`)
	stateRe := regexp.MustCompile(`state="([^"]*)"`)
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: alert, expr, a severity and a summary are needed", r)
			}
			if _, err := time.ParseDuration(r.For); r.For != "" && err != nil {
				t.Errorf("%s: for: %v", r.Alert, err)
			}
			for _, name := range metricRe.FindAllString(r.Expr, -1) {
				if !names[name] {
					t.Errorf("%s uses %s, which /metrics does not export", r.Alert, name)
				}
			}
			for _, m := range outcomeRe.FindAllStringSubmatch(r.Expr, -1) {
				for _, o := range strings.Split(m[1], "|") {
					if !slices.Contains([]job.Outcome{job.OutcomeFinished, job.OutcomeFailed, job.OutcomeCancelled, job.OutcomeLost}, job.Outcome(o)) {
						t.Errorf("%s: no outcome %q", r.Alert, o)
					}
				}
			}
			for _, m := range stateRe.FindAllStringSubmatch(r.Expr, -1) {
				if m[1] != string(job.Pending) && m[1] != string(job.Running) {
					t.Errorf("%s: scrapyd_jobs has no state %q", r.Alert, m[1])
				}
			}
		}
	}
	for _, want := range []string{"ScrapydSpiderNoRecentSuccess", "ScrapydSpiderFailuresRising"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no %s alert (issue 17) in %v", want, alerts)
		}
	}
	// promtool checks the expressions and runs the alerts on made-up
	// series (scrapyd-alerts.test.yml: a spider 25 h and 27 h after its
	// last success, failures rising).
	if promtool, err := exec.LookPath("promtool"); err == nil {
		for _, args := range [][]string{{"check", "rules", "scrapyd-alerts.yml"}, {"test", "rules", "scrapyd-alerts.test.yml"}} {
			cmd := exec.Command(promtool, args...)
			cmd.Dir = filepath.Dir(alertsFile)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	} else {
		t.Log("promtool not installed (Debian: prometheus): its check skipped")
	}
}
