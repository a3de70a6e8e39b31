package store

import "sort"

// Caps are the slot caps of [project:NAME] sections (issue 16): a
// project's running crawls at most (MaxProc), and each of its spiders'
// (SpiderMaxProc); 0 means no cap.
type Caps map[string]Cap

// Cap is one project's caps.
type Cap struct{ MaxProc, SpiderMaxProc int }

// Running counts running jobs by [project, spider].
type Running map[[2]string]int

// None: nothing is capped.
func (c Caps) None() bool {
	for _, x := range c {
		if x.MaxProc > 0 || x.SpiderMaxProc > 0 {
			return false
		}
	}
	return true
}

// Blocked lists the projects at their max_proc and the [project, spider]
// pairs at their spider_max_proc, given what runs, sorted.
func (c Caps) Blocked(r Running) (projects []string, spiders [][2]string) {
	perProject := map[string]int{}
	for k, n := range r {
		perProject[k[0]] += n
	}
	for p, n := range perProject {
		if max := c[p].MaxProc; max > 0 && n >= max {
			projects = append(projects, p)
		}
	}
	for k, n := range r {
		if max := c[k[0]].SpiderMaxProc; max > 0 && n >= max && !(c[k[0]].MaxProc > 0 && perProject[k[0]] >= c[k[0]].MaxProc) {
			spiders = append(spiders, k)
		}
	}
	sort.Strings(projects)
	sort.Slice(spiders, func(i, j int) bool {
		if spiders[i][0] != spiders[j][0] {
			return spiders[i][0] < spiders[j][0]
		}
		return spiders[i][1] < spiders[j][1]
	})
	return projects, spiders
}

// Waiting says which cap holds back a pending job of project and spider
// given what runs: "max_proc", "spider_max_proc", or "" for none.
func (c Caps) Waiting(r Running, project, spider string) string {
	cp, ok := c[project]
	if !ok {
		return ""
	}
	if cp.MaxProc > 0 {
		n := 0
		for k, m := range r {
			if k[0] == project {
				n += m
			}
		}
		if n >= cp.MaxProc {
			return "max_proc"
		}
	}
	if cp.SpiderMaxProc > 0 && r[[2]string{project, spider}] >= cp.SpiderMaxProc {
		return "spider_max_proc"
	}
	return ""
}
