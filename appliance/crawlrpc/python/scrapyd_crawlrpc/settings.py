"""Settings shim: the project's own settings, plus our extension.

The daemon points SCRAPY_SETTINGS_MODULE here and names the project's real
settings module in SCRAPYD_CRAWLRPC_SETTINGS. Everything Scrapy would read
from that module is copied unchanged; the extension is added to
EXTENSIONS_BASE rather than EXTENSIONS, so that neither the project's
EXTENSIONS dict nor a `-s EXTENSIONS=...` from schedule.json (which replaces
the whole dict) can drop it. A project can still disable it explicitly with
EXTENSIONS = {"scrapyd_crawlrpc.extension.WebService": None}.
"""

import importlib as _importlib
import os as _os

from scrapy.settings import default_settings as _defaults

_project = _importlib.import_module(_os.environ["SCRAPYD_CRAWLRPC_SETTINGS"])

# Scrapy's Settings.setmodule reads exactly the upper-case names.
globals().update((_k, getattr(_project, _k)) for _k in dir(_project) if _k.isupper())

EXTENSIONS_BASE = dict(getattr(_project, "EXTENSIONS_BASE", _defaults.EXTENSIONS_BASE))
EXTENSIONS_BASE.setdefault("scrapyd_crawlrpc.extension.WebService", 500)

# A daemon asleep (idle_timeout) hears of the crawl's end through the wake
# socket (scrapyd-wake.socket), which starts it: the crawl pokes it as its
# process exits. A crawl that fails or is killed is poked for by its unit's
# ExecStopPost= instead (a clean exit leaves the unit active, RemainAfterExit).
_wake = _os.environ.get("SCRAPYD_WAKE_SOCKET")
if _wake:
    import atexit as _atexit

    def _poke(path=_wake):
        import socket

        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(path)
        except OSError:
            pass

    _atexit.register(_poke)
