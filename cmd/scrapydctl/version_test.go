package main

import (
	"context"
	"testing"
	"time"
)

func TestDeployVersion(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		v     string
		want  string
	}{{
		name: "default is the unix time", v: "", want: "1700000000",
	}, {
		name: "given version", v: "r23", want: "r23",
	}, {
		name: "GIT without tags counts commits",
		setup: func(t *testing.T, dir string) {
			needTool(t, "git", "--version")
			sh(t, dir, "git", "init", "-q", "-b", "main")
			for _, f := range []string{"a", "b"} {
				writeFile(t, dir+"/"+f, f)
				sh(t, dir, "git", "add", f)
				sh(t, dir, "git", "commit", "-q", "-m", f)
			}
		},
		v: "GIT", want: "r2-main",
	}, {
		name: "GIT with a tag uses describe, branch with a slash made safe",
		setup: func(t *testing.T, dir string) {
			needTool(t, "git", "--version")
			sh(t, dir, "git", "init", "-q", "-b", "feature/x")
			writeFile(t, dir+"/a", "a")
			sh(t, dir, "git", "add", "a")
			sh(t, dir, "git", "commit", "-q", "-m", "a")
			sh(t, dir, "git", "tag", "-a", "v1.2", "-m", "v1.2")
		},
		v: "GIT", want: "v1.2-feature_x",
	}, {
		name: "HG uses the tip revision and branch",
		setup: func(t *testing.T, dir string) {
			needTool(t, "hg", "--version")
			sh(t, dir, "hg", "init")
			for _, f := range []string{"a", "b"} {
				writeFile(t, dir+"/"+f, f)
				sh(t, dir, "hg", "add", f)
				sh(t, dir, "hg", "commit", "-m", f)
			}
			sh(t, dir, "hg", "branch", "-q", "stable")
			writeFile(t, dir+"/c", "c")
			sh(t, dir, "hg", "add", "c")
			sh(t, dir, "hg", "commit", "-m", "c")
		},
		v: "HG", want: "r2-stable",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			got, err := deployVersion(context.Background(), dir, tt.v, now)
			if err != nil || got != tt.want {
				t.Fatalf("deployVersion(%q) = %q, %v; want %q", tt.v, got, err, tt.want)
			}
		})
	}
}

func TestDeployVersionOutsideRepository(t *testing.T) {
	needTool(t, "git", "--version")
	if _, err := deployVersion(context.Background(), t.TempDir(), "GIT", time.Now()); err == nil {
		t.Fatal("GIT outside a repository must fail")
	}
}
