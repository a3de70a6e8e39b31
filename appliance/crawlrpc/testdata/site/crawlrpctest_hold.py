import os
import time

from scrapy import signals


class Hold:
    """Holds the crawl's start at one point so that a test can signal it there.

    CRAWLRPCTEST_HOLD_AT names the point (built, spider_opened,
    engine_started); on reaching it the crawl creates CRAWLRPCTEST_HOLD_FILE
    and blocks for CRAWLRPCTEST_HOLD_SECONDS (default 2), the main thread
    busy, as on a loaded machine. A signal's Python handler still runs
    during the sleep.
    """

    def __init__(self, at, path):
        self.at = at
        self.path = path

    @classmethod
    def from_crawler(cls, crawler):
        ext = cls(os.environ.get("CRAWLRPCTEST_HOLD_AT"), os.environ.get("CRAWLRPCTEST_HOLD_FILE"))
        if ext.at == "built":
            ext.hold()
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.engine_started, signal=signals.engine_started)
        return ext

    def hold(self):
        with open(self.path, "w"):
            pass
        time.sleep(float(os.environ.get("CRAWLRPCTEST_HOLD_SECONDS", "2")))

    def spider_opened(self, spider):
        if self.at == "spider_opened":
            self.hold()

    def engine_started(self):
        if self.at == "engine_started":
            self.hold()
