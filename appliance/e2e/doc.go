// Package e2e holds the end-to-end tests: the real scrapyd binary, real
// Scrapy (Debian's python3-scrapy) crawling a local site, a real SQLite
// file. The sample Scrapy project they deploy is in testdata/sample.
package e2e
