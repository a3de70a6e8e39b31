package store

import (
	"errors"
	"time"

	"github.com/scrapyd-debian/scrapyd/appliance/job"
)

// ShippedLog is a crawl's log as far as its node has shipped it to a
// shared database (cluster mode, issue 15 point 5), so that every node can
// serve it.
type ShippedLog struct {
	Seq                 int64
	Project, Spider, ID string
	State               job.State // the job's
	Node                string    // the node that runs (ran) the crawl and ships its log
	Size                int64     // bytes of the crawl's log file shipped, from its start
	Capped              bool      // log_ship_limit was reached: the rest stays on Node
	Done                bool      // the crawl has ended and its log is shipped to its end (or cap)
	Modified            time.Time // when bytes were last shipped
}

// ErrNotOurs is a log shipment refused because the job is not, or no
// longer, this node's (it was deleted, or given to another node): the
// shipper drops it.
var ErrNotOurs = errors.New("the job is not this node's")
