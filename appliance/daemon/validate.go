package daemon

import (
	"github.com/scrapyd-debian/scrapyd/appliance/config"
	"github.com/scrapyd-debian/scrapyd/appliance/crawlrpc"
	"github.com/scrapyd-debian/scrapyd/appliance/store/pgstore"
)

// Validate runs every check a component makes of a configuration before
// it applies it, so that one answer holds everywhere: the daemon runs it at
// start and at every reload (a reload it refuses leaves the running
// configuration in force in every component), and `scrapyd config check`
// runs it too, so a file that check passes is one the daemon takes. The
// error is the daemon's own message.
//
// A check here reads, but changes nothing: config.Load's own validation
// has run, and cfg is what would be applied (on a reload, restart-only
// options keep their running values, see config.Live).
func Validate(cfg *config.Config) error {
	for _, check := range checks {
		if err := check(cfg); err != nil {
			return err
		}
	}
	return nil
}

// checks are the components' checks, in the order the daemon starts them.
var checks = []func(*config.Config) error{
	CheckCrawlUser,
	func(c *config.Config) error { return crawlrpc.Check(webserviceConfig(c)) },
	func(c *config.Config) error { _, err := tlsConfig(c); return err },
	checkPasswordFile,
}

// checkPasswordFile: database_password_file, when the database uses it, is
// readable and not readable by others.
func checkPasswordFile(c *config.Config) error {
	if c.Database == "" || c.DatabasePasswordFile == "" {
		return nil
	}
	if _, err := pgstore.ReadPasswordFile(c.DatabasePasswordFile); err != nil {
		return c.PathError("database_password_file", c.DatabasePasswordFile, err)
	}
	return nil
}
