package main

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/scrapyd-debian/scrapyd/appliance/client"
	"github.com/scrapyd-debian/scrapyd/appliance/scrapycfg"
)

// requirementsFile is the project's requirements file: the one scrapy.cfg
// names in [deploy] requirements (relative to the project), else
// requirements.txt beside scrapy.cfg when there is one; "" for none.
func requirementsFile(dir string, cfg *scrapycfg.Config) (string, error) {
	if cfg != nil {
		if name, ok := cfg.Get("deploy", "requirements"); ok && strings.TrimSpace(name) != "" {
			name = scrapycfg.ExpandEnv(strings.TrimSpace(name))
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			if _, err := os.Stat(name); err != nil {
				return "", fmt.Errorf("scrapy.cfg [deploy] requirements: %w", err)
			}
			return name, nil
		}
	}
	if dir == "" {
		return "", nil
	}
	name := filepath.Join(dir, "requirements.txt")
	if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	return name, nil
}

// deployDeps reads what the upload sends besides the egg: the
// requirements, and with wheels a wheelhouse built here by `pip wheel`
// (for servers without an index, or for private packages).
func deployDeps(ctx context.Context, reqFile, python string, wheels bool) (client.Deps, error) {
	var d client.Deps
	if reqFile == "" {
		if wheels {
			return d, errors.New("deploy --wheels: the project has no requirements.txt (nor [deploy] requirements in scrapy.cfg)")
		}
		return d, nil
	}
	var err error
	if d.Requirements, err = os.ReadFile(reqFile); err != nil {
		return d, err
	}
	if wheels {
		d.Wheels, err = buildWheelhouse(ctx, reqFile, python)
	}
	return d, err
}

// buildWheelhouse runs `python -m pip wheel -r FILE -w TMP` and zips the
// wheels it wrote, flat, as the server expects them.
func buildWheelhouse(ctx context.Context, reqFile, python string) ([]byte, error) {
	b := pythonBuild{what: "-m pip wheel", args: []string{"-m", "pip", "wheel", "--disable-pip-version-check", "-r", reqFile, "-w"}, glob: "*.whl", noun: "wheel"}
	return b.run(ctx, python, filepath.Dir(reqFile), zipWheels)
}

// zipWheels zips the wheel files, flat.
func zipWheels(whls []string) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, whl := range whls {
		data, err := os.ReadFile(whl)
		if err != nil {
			return nil, err
		}
		// Wheels are zips already: stored, not compressed again.
		w, err := zw.CreateHeader(&zip.FileHeader{Name: filepath.Base(whl), Method: zip.Store})
		if err != nil {
			return nil, err
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
