import pkgutil

import scrapy


class ParamsSpider(scrapy.Spider):
    """Needs no network: echoes its -a arguments, a -s setting and package data as one item each.

    -a stat=NAME -a stat_value=N also records the stat NAME = N (an integer),
    as an extension of the user's would.
    """

    name = "params"
    start_urls = ["data:,params"]

    def parse(self, response):
        limit = int(getattr(self, "limit", "1"))
        data = pkgutil.get_data("sample", "data/greeting.txt").decode().strip()
        if getattr(self, "stat", None):
            self.crawler.stats.set_value(self.stat, int(getattr(self, "stat_value", "0")))
        for n in range(limit):
            yield {
                "n": n,
                "category": getattr(self, "category", None),
                "greeting": self.settings.get("SAMPLE_GREETING"),
                "package_data": data,
                "job": getattr(self, "_job", None),
                "version": getattr(self, "_version", None),
            }
