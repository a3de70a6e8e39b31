"""The Scrapyd daemon's side-car inside each crawl: the crawl web service.

Written to disk and put on the crawl's PYTHONPATH by the Go package
appliance/crawlrpc. This file stays empty on purpose: importing the settings
shim must not import Twisted or Scrapy internals before Scrapy has installed
its reactor.
"""
