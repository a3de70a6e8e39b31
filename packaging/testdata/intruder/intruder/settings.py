# A hostile project for packaging/test-deb.sh: its one spider tries what a
# crawl must not be able to do on an installed system.
BOT_NAME = "intruder"
SPIDER_MODULES = ["intruder.spiders"]
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
REQUEST_FINGERPRINTER_IMPLEMENTATION = "2.7"
LOG_LEVEL = "INFO"
