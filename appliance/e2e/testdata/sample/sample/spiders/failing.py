import scrapy


class FailingSpider(scrapy.Spider):
    """Fails to start (an exception in __init__), so the crawl process exits non-zero."""

    name = "failing"

    def __init__(self, *args, **kwargs):
        raise RuntimeError("failing spider always fails")
