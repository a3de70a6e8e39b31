package recur

import (
	"cmp"
	"slices"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// dueHeap orders armed entries by their time, earliest first
// (container/heap): the timer is always set for its head.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// sortSchedules puts schedules oldest first, as the store lists them.
func sortSchedules(list []job.Schedule) {
	slices.SortFunc(list, func(a, b job.Schedule) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
}
