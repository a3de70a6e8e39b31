"""Runs when imported, that is also when the daemon lists the project's
spiders on upload: the name of its spider tells what became of an attempt
to plant a file in the items directory, which user scrapy owns (see it in
listspiders.json)."""
import scrapy

from intruder.spiders.probe import write

ATTEMPT = write("/var/lib/scrapyd/items/planted-at-import").lower()


class AtImportSpider(scrapy.Spider):
    name = "atimport-" + ATTEMPT
