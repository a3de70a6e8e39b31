# The sample project's settings plus Hold, built after the web service
# (EXTENSIONS_BASE order 500), as a project's own extensions usually are.
from sample.settings import *  # noqa: F401,F403

EXTENSIONS = {"crawlrpctest_hold.Hold": 900}
