package testkit

import (
	"fmt"
	"strings"
	"testing"
)

// NodeName is the node_name StartCluster gives its i-th daemon (from 0).
func NodeName(i int) string { return fmt.Sprintf("node%d", i+1) }

// StartCluster starts n daemons as the nodes of one cluster (issue 15
// point 8): the same database, node_name node1…nodeN, each with its own
// root and port. o is every node's: its Conf gets the database and the
// node's name appended; Root and Port must be unset (each node has its
// own). Each is stopped when the test ends, like StartDaemon's.
func StartCluster(t testing.TB, n int, database string, o Options) []*Daemon {
	t.Helper()
	if o.Root != "" || o.Port != 0 {
		t.Fatal("StartCluster: each node has its own root and port")
	}
	nodes := make([]*Daemon, n)
	for i := range nodes {
		no := o
		no.Conf = NodeConf(o.Conf, database, NodeName(i))
		nodes[i] = StartDaemon(t, no)
	}
	return nodes
}

// NodeConf is conf with a cluster node's options appended (restarts of a
// StartCluster node start it with Root and this Conf).
func NodeConf(conf, database, name string) string {
	return strings.TrimRight(conf, "\n") + "\ndatabase = " + database + "\nnode_name = " + name + "\n"
}
