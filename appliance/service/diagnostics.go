package service

// Diagnostics is what the daemon says about itself beyond Scrapyd's job
// counts. daemonstatus.json must answer exactly Scrapyd's keys (Scrapyd's
// own integration suite compares the whole answer, issue 13), so these are
// served by /diagnostics.json, the home page and `scrapydctl daemonstatus`.
type Diagnostics struct {
	Launcher string // the launcher chosen at start: "systemd" or "process"
	Version  string // the daemon's version
	// ConfigError is why the last reload was refused ("" while the
	// configuration files are valid); the previous snapshot stays in use.
	ConfigError string
	// RestartNeeded names the changed options that apply only at the next
	// start.
	RestartNeeded []string
	// Warnings are security warnings about the running configuration.
	Warnings []string
}

// Diagnostics returns the daemon's diagnostics (zero without a Diagnose
// hook, as in unit tests).
func (s *Service) Diagnostics() Diagnostics {
	if s.Diagnose == nil {
		return Diagnostics{}
	}
	return s.Diagnose()
}
