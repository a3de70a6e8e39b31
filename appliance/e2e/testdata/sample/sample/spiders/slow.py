import time

import scrapy


class SlowSpider(scrapy.Spider):
    """Runs for a long time (one data: page per DOWNLOAD_DELAY), so that it can be cancelled.

    -a pages=N stops after N pages; -a linger=S blocks S seconds while closing,
    so that a graceful shutdown hangs and only a forced stop (SIGKILL) ends it.
    """

    name = "slow"
    custom_settings = {"DOWNLOAD_DELAY": 0.2, "CONCURRENT_REQUESTS": 1}

    def start_requests(self):
        pages = int(getattr(self, "pages", "100000"))
        for n in range(pages):
            yield scrapy.Request(f"data:,page{n}", dont_filter=True, cb_kwargs={"n": n})

    def parse(self, response, n):
        self.logger.info("slow page %d", n)
        yield {"page": n}

    def closed(self, reason):
        time.sleep(float(getattr(self, "linger", "0")))
