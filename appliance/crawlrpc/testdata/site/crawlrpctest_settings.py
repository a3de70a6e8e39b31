# A project settings module with its own EXTENSIONS, to show the web service
# is added without dropping them.
from sample.settings import *  # noqa: F401,F403

EXTENSIONS = {"crawlrpctest_marker.Marker": 100}
