from scrapy import signals


class Marker:
    """A project's own extension: its stat shows the project's EXTENSIONS were kept."""

    def __init__(self, stats):
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        ext = cls(crawler.stats)
        crawler.signals.connect(ext.opened, signal=signals.spider_opened)
        return ext

    def opened(self, spider):
        self.stats.set_value("crawlrpctest/marker", 1)
