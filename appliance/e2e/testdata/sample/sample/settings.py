BOT_NAME = "sample"
SPIDER_MODULES = ["sample.spiders"]
NEWSPIDER_MODULE = "sample.spiders"
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
REQUEST_FINGERPRINTER_IMPLEMENTATION = "2.7"
LOG_LEVEL = "INFO"
SAMPLE_GREETING = "hello-from-settings"

try:
    from local_settings import *  # noqa: F401,F403  (absent on the server)
except ImportError:
    pass
