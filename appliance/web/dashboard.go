package web

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// dashboardRuns is how many of a spider's last runs its charts show.
const dashboardRuns = 20

// Chart geometry, in the SVG's own units (it scales to its box).
const (
	chartW, chartH = 300, 60
	barGap         = 2
)

// chart is one small bar chart: a bar per run, oldest at the left.
type chart struct {
	Label string // what the bars measure and the largest value
	Bars  []bar
	W, H  int
}

type bar struct {
	X, Y, W, H int
	Class      string // the run's outcome
	Title      string // shown on hover: the run in words
}

type spiderCard struct {
	Project, Spider string
	Page            string // the project page
	Last            *job.Job
	LastPage        string
	Runs            int
	Succeeded       int
	Duration, Items chart
}

type failure struct {
	Job     job.Job
	Page    string
	Exit    string
	Runtime string
}

func (h *handlers) dashboard(c *fiber.Ctx) error {
	cfg := h.o.Config()
	d, err := h.o.Service.Dashboard(c.UserContext(), dashboardRuns)
	if err != nil {
		return err
	}
	var failures []failure
	for _, j := range d.Failures {
		f := failure{Job: j, Page: jobPath(j.Project, j.ID), Runtime: runtime(j.Started, j.Ended)}
		if j.ExitCode != nil {
			f.Exit = fmt.Sprint(*j.ExitCode)
		}
		failures = append(failures, f)
	}
	cards := make([]spiderCard, 0, len(d.Spiders))
	for _, s := range d.Spiders {
		cards = append(cards, card(s))
	}
	return render(c, fiber.StatusOK, "dashboard.html", struct {
		base
		Slots, Running, Pending int
		Failures                []failure
		Spiders                 []spiderCard
		RunsShown               int
	}{h.base(c, cfg, "Dashboard"), d.Slots, d.Running, d.Pending, failures, cards, dashboardRuns})
}

// card turns a spider's runs (newest first) into its charts.
func card(s service.SpiderRuns) spiderCard {
	c := spiderCard{Project: s.Project, Spider: s.Spider, Page: "/projects/" + url.PathEscape(s.Project), Runs: len(s.Runs)}
	if len(s.Runs) > 0 {
		c.Last, c.LastPage = &s.Runs[0], jobPath(s.Runs[0].Project, s.Runs[0].ID)
	}
	n := len(s.Runs)
	secs, items := make([]float64, n), make([]float64, n)
	titles, classes := make([]string, n), make([]string, n)
	for i, j := range s.Runs {
		k := n - 1 - i // oldest first
		if !j.Started.IsZero() && !j.Ended.IsZero() {
			secs[k] = j.Ended.Sub(j.Started).Seconds()
		}
		count, known := itemCount(j.Stats)
		items[k] = float64(count)
		classes[k] = outcomeClass(j)
		if classes[k] == "finished" {
			c.Succeeded++
		}
		itemText := "items unknown"
		if known {
			itemText = fmt.Sprintf("%d items", count)
		}
		titles[k] = fmt.Sprintf("%s, %s: %s, %s, %s", clock(j.Ended), j.ID, classes[k], runtime(j.Started, j.Ended), itemText)
	}
	maxSecs, maxItems := bars(secs, titles, classes, &c.Duration), bars(items, titles, classes, &c.Items)
	epoch := time.Unix(0, 0)
	c.Duration.Label = "Duration, longest " + runtime(epoch, epoch.Add(time.Duration(maxSecs*float64(time.Second))))
	c.Items.Label = fmt.Sprintf("Items, most %d", int64(maxItems))
	return c
}

// bars lays values out as bars scaled to the largest (a run of zero shows
// as a sliver, so that every run is seen); it returns the largest.
func bars(values []float64, titles, classes []string, c *chart) float64 {
	c.W, c.H = chartW, chartH
	top := 0.0
	for _, v := range values {
		top = max(top, v)
	}
	slot := chartW / dashboardRuns
	for i, v := range values {
		h := 2
		if top > 0 {
			h = max(h, int(v/top*float64(chartH-2)))
		}
		c.Bars = append(c.Bars, bar{X: i * slot, Y: chartH - h, W: slot - barGap, H: h, Class: classes[i], Title: titles[i]})
	}
	return top
}

// itemCount is a finished job's item_scraped_count from its stats.
func itemCount(stats string) (int64, bool) {
	if stats == "" {
		return 0, false
	}
	d := json.NewDecoder(strings.NewReader(stats))
	d.UseNumber()
	var raw map[string]any
	if d.Decode(&raw) != nil {
		return 0, false
	}
	n, ok := raw["item_scraped_count"].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := n.Int64()
	return v, err == nil
}
