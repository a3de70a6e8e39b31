package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// deployVersion turns the configured version into the one to upload, as
// scrapyd-deploy does: "GIT" and "HG" ask the project's repository, empty
// means the current unix time, anything else is used as given.
func deployVersion(ctx context.Context, dir, v string, now time.Time) (string, error) {
	switch v {
	case "":
		return strconv.FormatInt(now.Unix(), 10), nil
	case "GIT":
		return gitVersion(ctx, dir)
	case "HG":
		return hgVersion(ctx, dir)
	}
	return v, nil
}

// gitVersion is "<git describe>-<branch>", or "r<commit count>-<branch>"
// when no tag describes HEAD. The count is preferred to describe --always's
// bare hash: hashes do not order, and the latest version must sort last
// (scrapyd #34).
func gitVersion(ctx context.Context, dir string) (string, error) {
	desc, err := vcs(ctx, dir, "git", "describe")
	if err != nil {
		count, cerr := vcs(ctx, dir, "git", "rev-list", "--count", "HEAD")
		if cerr != nil {
			return "", fmt.Errorf("version GIT: %w", cerr)
		}
		desc = "r" + count
	}
	branch, err := vcs(ctx, dir, "git", "rev-parse", "--abbrev-ref", "HEAD")
	if err != nil {
		return "", fmt.Errorf("version GIT: %w", err)
	}
	return desc + "-" + safeBranch(branch), nil
}

// hgVersion is "r<tip revision>-<branch>".
func hgVersion(ctx context.Context, dir string) (string, error) {
	rev, err := vcs(ctx, dir, "hg", "tip", "--template", "{rev}")
	if err != nil {
		return "", fmt.Errorf("version HG: %w", err)
	}
	branch, err := vcs(ctx, dir, "hg", "branch")
	if err != nil {
		return "", fmt.Errorf("version HG: %w", err)
	}
	return "r" + rev + "-" + safeBranch(branch), nil
}

// safeBranch replaces path separators: a branch "feature/x" would make a
// version the server refuses as an unsafe name.
func safeBranch(b string) string {
	return strings.NewReplacer("/", "_", `\`, "_").Replace(b)
}

// vcs runs a version-control command in dir and returns its trimmed output.
func vcs(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// HGPLAIN: no aliases, colour or localisation from the user's hgrc.
	cmd.Env = append(os.Environ(), "HGPLAIN=1", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
