package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/scrapyd-debian/scrapyd/appliance/egg"
)

// EggChannel announces every change to the eggs: each node reconciles its
// cached copies on it (a deleted version's file goes from every node).
const EggChannel = "scrapyd_eggs"

// AddEgg stores an upload, its hash and its spider list in one
// transaction: it replaces a version of the same egg.Sanitize stem (whose
// spider list goes too, as it names a version no longer there), and
// announces the change on EggChannel.
func (s *Store) AddEgg(ctx context.Context, u egg.Upload) error {
	names := u.Spiders
	if names == nil {
		names = []string{}
	}
	raw, _ := json.Marshal(names)
	err := pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
		stem := egg.Sanitize(u.Version)
		var old string
		err := t.QueryRow(ctx, `SELECT version FROM eggs WHERE project = $1 AND stem = $2 FOR UPDATE`, u.Project, stem).Scan(&old)
		switch {
		case err == nil:
			if _, err := t.Exec(ctx, `DELETE FROM spiders WHERE project = $1 AND version = $2`, u.Project, old); err != nil {
				return err
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if _, err := t.Exec(ctx, `INSERT INTO eggs (project, stem, version, data, sha256, env, requirements, wheels)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (project, stem) DO UPDATE SET version = excluded.version, data = excluded.data,
				sha256 = excluded.sha256, env = excluded.env, requirements = excluded.requirements,
				wheels = excluded.wheels, uploaded = now()`,
			u.Project, stem, u.Version, u.Data, u.SHA256, u.Env, u.Requirements, u.Wheels); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `INSERT INTO spiders (project, version, names) VALUES ($1, $2, $3)
			ON CONFLICT (project, version) DO UPDATE SET names = excluded.names`, u.Project, u.Version, string(raw)); err != nil {
			return err
		}
		return eggNotify(ctx, t)
	})
	return unavailable(err)
}

func eggNotify(ctx context.Context, t pgx.Tx) error {
	_, err := t.Exec(ctx, `SELECT pg_notify('`+EggChannel+`', '')`)
	return err
}

// EggProjects lists the projects that have eggs, sorted.
func (s *Store) EggProjects(ctx context.Context) ([]string, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT project FROM eggs ORDER BY project`)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", unavailable(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", unavailable(err))
	}
	return out, nil
}

// EggRecords lists a project's versions (every project's for ""), without
// their bytes, in no particular order.
func (s *Store) EggRecords(ctx context.Context, project string) ([]egg.Record, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT project, version, sha256, env, uploaded FROM eggs
		WHERE $1 = '' OR project = $1`, project)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", unavailable(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (egg.Record, error) {
		var r egg.Record
		err := row.Scan(&r.Project, &r.Version, &r.SHA256, &r.Env, &r.Uploaded)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", unavailable(err))
	}
	return out, nil
}

// EggData returns a version's egg and its hash; egg.ErrNotFound when it
// is not (or no longer) stored.
func (s *Store) EggData(ctx context.Context, project, version string) (data []byte, sha256 string, err error) {
	err = s.pool.QueryRow(ctx, `SELECT data, sha256 FROM eggs WHERE project = $1 AND stem = $2`,
		project, egg.Sanitize(version)).Scan(&data, &sha256)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", egg.ErrNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("read egg: %w", unavailable(err))
	}
	return data, sha256, nil
}

// EggDeps returns what a version's environment is built from.
func (s *Store) EggDeps(ctx context.Context, project, version string) (requirements string, wheels []byte, err error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	err = s.pool.QueryRow(ctx, `SELECT requirements, wheels FROM eggs WHERE project = $1 AND stem = $2`,
		project, egg.Sanitize(version)).Scan(&requirements, &wheels)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, egg.ErrNotFound
	}
	if err != nil {
		return "", nil, fmt.Errorf("read egg: %w", unavailable(err))
	}
	return requirements, wheels, nil
}

// DeleteEgg removes one version (by its name or stem) and its spider
// list, and announces it; egg.ErrNotFound when there is none.
func (s *Store) DeleteEgg(ctx context.Context, project, version string) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
		var name string
		err := t.QueryRow(ctx, `DELETE FROM eggs WHERE project = $1 AND stem = $2 RETURNING version`,
			project, egg.Sanitize(version)).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			return egg.ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `DELETE FROM spiders WHERE project = $1 AND version = $2`, project, name); err != nil {
			return err
		}
		return eggNotify(ctx, t)
	})
	return unavailable(err)
}

// DeleteEggProject removes a project's versions and spider lists, and
// announces it; egg.ErrNotFound when it has none.
func (s *Store) DeleteEggProject(ctx context.Context, project string) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
		tag, err := t.Exec(ctx, `DELETE FROM eggs WHERE project = $1`, project)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return egg.ErrNotFound
		}
		if _, err := t.Exec(ctx, `DELETE FROM spiders WHERE project = $1`, project); err != nil {
			return err
		}
		return eggNotify(ctx, t)
	})
	return unavailable(err)
}

// ListenEggs calls fn for every change to the eggs, by any node, until
// ctx ends; and once after each (re)connect, as Listen does.
func (s *Store) ListenEggs(ctx context.Context, fn func()) {
	s.listenOn(ctx, EggChannel, func(string) { fn() })
}
