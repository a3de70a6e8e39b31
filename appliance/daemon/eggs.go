package daemon

import (
	"context"

	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/dispatch"
	"github.com/scrapyd-debian/scrapyd/appliance/egg"
	"github.com/scrapyd-debian/scrapyd/appliance/egg/eggcache"
	"github.com/scrapyd-debian/scrapyd/appliance/pyenv"
	"github.com/scrapyd-debian/scrapyd/appliance/service"
)

// eggStore is the egg store as the daemon wires it: egg.Store (eggs_dir),
// or in a cluster eggcache.Store (the database's eggs, copied into
// eggs_dir when needed).
type eggStore interface {
	service.Eggs
	dispatch.Eggs
}

// openEggs opens the egg store of the database option; uploads and
// fetches a crash left half-done go first.
func (d *daemon) openEggs(cfg *config.Config) eggStore {
	local := &egg.Store{Dir: cfg.EggsDir}
	local.CleanStaging()
	if d.db.eggs == nil {
		return local
	}
	return &eggcache.Store{DB: d.db.eggs, Dir: cfg.EggsDir, Envs: nodeEnvs{d}}
}

// nodeEnvs builds, on this node, the environments of versions uploaded to
// another: before the version's first crawl or listing here, as the crawl
// user in the listing's sandbox, like an upload's.
type nodeEnvs struct{ d *daemon }

func (e nodeEnvs) Has(id string) bool { return e.d.envs.Has(id) }

func (e nodeEnvs) Build(ctx context.Context, id, requirements, wheels string) error {
	spec := pyenv.Spec{Requirements: []byte(requirements), Wheels: wheels}
	return e.d.envs.Rebuild(ctx, id, spec, e.d.install(e.d.conf()))
}

// reconcileEggs keeps this node's copies of the cluster's eggs to what the
// database holds: at each announcement of a change (a delversion or
// delproject on any node), and once after each (re)connect, since the
// announcements made meanwhile are lost. The environments no version
// uses any more go with them.
func (d *daemon) reconcileEggs(ctx context.Context) {
	cache, ok := d.eggs.(*eggcache.Store)
	if !ok || d.db.listenEggs == nil {
		return
	}
	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.db.listenEggs(ctx, func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		})
	}()
	defer func() { <-done }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		if err := cache.Reconcile(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("cannot remove copies of deleted eggs from eggs_dir; retried at the next change", "err", err)
		}
		if gone := d.envs.Collect(func() (map[string]bool, error) { return service.EnvsInUse(d.eggs) }, false); len(gone) > 0 {
			d.log.Info("removed Python environments no version uses", "envs", gone)
		}
	}
}
