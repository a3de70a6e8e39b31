import scrapy


class CatalogSpider(scrapy.Spider):
    """Crawls the test site: an index page linking to product pages, one item per product."""

    name = "catalog"

    def __init__(self, url=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not url:
            raise ValueError("catalog needs -a url=<site index>")
        self.start_urls = [url]

    def parse(self, response):
        for href in response.css("a.product::attr(href)").getall():
            yield response.follow(href, self.parse_product)
        for href in response.css("a.next::attr(href)").getall():
            yield response.follow(href, self.parse)

    def parse_product(self, response):
        yield {
            "sku": response.css(".sku::text").get(),
            "price": float(response.css(".price::text").get()),
            "job": getattr(self, "_job", None),
            "url": response.url,
        }
