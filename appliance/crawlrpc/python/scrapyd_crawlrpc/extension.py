"""The crawl web service, served to the Scrapyd daemon over a Unix socket.

Old Scrapy (<= 0.24) served JSON-RPC 2.0 on a TCP port from inside each crawl
and reached any attribute of the crawler with getattr. Here the daemon speaks
JSON-RPC to clients and checks the envelope; the crawl only answers one small
request per connection, on a socket in a directory only the daemon and the
crawl can enter, and only for the resources and methods listed in
whitelist.json (written by the daemon from its own table, so the two sides
cannot disagree).

Channel: the daemon writes one JSON line and reads one JSON line back.
    {"op": "call", "path": "stats", "method": "get_value", "params": [...]}
    {"op": "get", "path": "enginestatus"}
    -> {"result": ...} or {"error": {"code": ..., "message": ..., "data": ...}}

At engine_stopped the final stats are written (atomically) to the file named
by SCRAPYD_CRAWLRPC_STATS, so the daemon keeps them after the crawl is gone.

A cancel sent while the crawl starts is kept (see _EarlyStop).
"""

import json
import logging
import os
import re
import signal
import traceback

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.spiders import Spider
from scrapy.utils.engine import get_engine_status
from scrapy.utils.misc import load_object
from scrapy.utils.serialize import ScrapyJSONEncoder
from twisted.internet import protocol
from twisted.protocols.basic import LineOnlyReceiver

logger = logging.getLogger(__name__)

SOCKET_ENV = "SCRAPYD_CRAWLRPC_SOCKET"
STATS_ENV = "SCRAPYD_CRAWLRPC_STATS"

# JSON-RPC 2.0 codes, as scrapy/utils/jsonrpc.py used them.
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603

# scrapy/utils/serialize.py SpiderReferencer: "spider:<hex id>:<name>".
SPIDER_REF = re.compile(r"^spider:([0-9a-f]+)?:?(.+)?$")

with open(os.path.join(os.path.dirname(__file__), "whitelist.json"), encoding="utf-8") as _f:
    WHITELIST = json.load(_f)

# The objects behind the whitelisted JSON-RPC paths (crawler.spiders in old
# Scrapy was the spider manager; today's Crawler has no loader of its own).
TARGETS = {
    "crawler": lambda ws: ws.crawler,
    "crawler/engine": lambda ws: ws.crawler.engine,
    "crawler/spiders": lambda ws: ws.spider_loader(),
    "stats": lambda ws: ws.crawler.stats,
}

# The read-only JSON resources. ExecutionEngine.open_spiders is deprecated
# (it warns) since Scrapy 2.6, hence the list built from engine.spider.
GETS = {
    "crawler/engine/open_spiders": lambda ws: [ws.crawler.engine.spider] if ws.crawler.engine.spider else [],
    "enginestatus": lambda ws: get_engine_status(ws.crawler.engine),
}


def _close_spider(engine, spider=None, reason="cancelled"):
    """engine.close_spider, the spider optional: clients seldom know its id()."""
    return engine.close_spider(spider if spider is not None else engine.spider, reason)


def _unpause(engine):
    """engine.unpause, effective now rather than at the next 5 s heartbeat."""
    engine.unpause()
    if engine.slot is not None:
        engine.slot.nextcall.schedule()


# Whitelisted methods that behave better than the engine's own.
OVERRIDES = {
    ("crawler/engine", "close_spider"): _close_spider,
    ("crawler/engine", "unpause"): _unpause,
}


class _Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class WebService:
    """The extension. Enabled by the settings shim; idle unless asked."""

    def __init__(self, crawler, socket_path, stats_path):
        self.crawler = crawler
        self.socket_path = socket_path
        self.stats_path = stats_path
        self._port = None
        self._loader = None
        crawler.signals.connect(self._start, signals.engine_started)
        crawler.signals.connect(self._stop, signals.engine_stopped)
        self._early = _EarlyStop(crawler)

    @classmethod
    def from_crawler(cls, crawler):
        socket_path = os.environ.get(SOCKET_ENV)
        stats_path = os.environ.get(STATS_ENV)
        if not socket_path and not stats_path:
            raise NotConfigured("not started by the Scrapyd daemon")
        return cls(crawler, socket_path, stats_path)

    def _start(self):
        if not self.socket_path:
            return
        # Imported here: the reactor must be the one Scrapy installed.
        from twisted.internet import reactor

        try:
            # A socket left by an earlier run of the same job would make bind fail.
            if os.path.exists(self.socket_path):
                os.unlink(self.socket_path)
            factory = protocol.Factory.forProtocol(_Channel)
            factory.noisy = False
            factory.service = self
            self._port = reactor.listenUNIX(self.socket_path, factory, mode=0o600)
        except Exception:
            # The crawl matters more than its web service.
            logger.exception("crawl web service: cannot listen on %s", self.socket_path)

    def _stop(self):
        # Stats first: once the socket is gone, the daemon may look for them.
        self._write_stats()
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()

    def _write_stats(self):
        if not self.stats_path:
            return
        tmp = self.stats_path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(dumps(self.crawler.stats.get_stats()))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.stats_path)
        except Exception:
            logger.exception("crawl web service: cannot write final stats to %s", self.stats_path)

    def spider_loader(self):
        if self._loader is None:
            settings = self.crawler.settings
            self._loader = load_object(settings["SPIDER_LOADER_CLASS"]).from_settings(settings.frozencopy())
        return self._loader

    def handle(self, line):
        """Answers one channel request; returns the reply line's bytes."""
        try:
            req = json.loads(line)
            if req.get("op") == "call":
                result = self._call(req["path"], req["method"], req.get("params"))
            elif req.get("op") == "get":
                result = self._get(req["path"])
            else:
                raise _Refused(METHOD_NOT_FOUND, "Method not found")
            return dumps({"result": result}).encode()
        except _Refused as e:
            return dumps({"error": {"code": e.code, "message": str(e), "data": None}}).encode()
        except Exception as e:
            error = {"code": INTERNAL_ERROR, "message": str(e), "data": traceback.format_exc()}
            return dumps({"error": error}).encode()

    def _call(self, path, method, params):
        if method not in (WHITELIST["call"].get(path) or ()):
            raise _Refused(METHOD_NOT_FOUND, "Method not found")
        params = self._decode(params if params is not None else [])
        args, kwargs = ([], params) if isinstance(params, dict) else (list(params), {})
        kwargs = {str(k): v for k, v in kwargs.items()}
        target = TARGETS[path](self)
        override = OVERRIDES.get((path, method))
        if override is not None:
            return override(target, *args, **kwargs)
        return getattr(target, method)(*args, **kwargs)

    def _get(self, path):
        if path not in WHITELIST["get"]:
            raise _Refused(METHOD_NOT_FOUND, "Method not found")
        return GETS[path](self)

    def _decode(self, obj):
        """Turns spider references back into the running spider, as SpiderReferencer did."""
        if isinstance(obj, str):
            m = SPIDER_REF.match(obj)
            return self._spider(obj, *m.groups()) if m else obj
        if isinstance(obj, list):
            return [self._decode(v) for v in obj]
        if isinstance(obj, dict):
            return {self._decode(k): self._decode(v) for k, v in obj.items()}
        return obj

    def _spider(self, ref, spider_id, name):
        spider = self.crawler.engine.spider
        if spider is not None and (
            (spider_id is not None and int(spider_id, 16) == id(spider)) or (name is not None and spider.name == name)
        ):
            return spider
        raise RuntimeError(f"Spider not running: {ref}")


class _EarlyStop:
    """Keeps a graceful stop (SIGINT, SIGTERM) asked while the crawl starts.

    Scrapy 2.8 installs its shutdown handlers only in CrawlerProcess.start,
    after Crawler.crawl has built the engine, opened the spider and sent
    engine_started; and a stop asked before engine.start sets running fails
    with "Engine not running". Until then SIGINT is Python's
    KeyboardInterrupt, raised wherever the main thread is: inside a
    spider_opened or engine_started handler Twisted's maybeDeferred turns it
    into a logged "Error caught on signal handler" and the crawl runs on to
    its end, so a cancel.json is lost and only the second one (SIGKILL) ends
    it. The daemon builds this extension in every crawl, before those
    signals, so from here on the first signal is remembered and replayed to
    Scrapy's own handler once the reactor runs with the engine started: the
    spider closes with reason "shutdown" exactly as for a later cancel. A
    second signal before that forces the stop, as Scrapy's second one does.
    The earlier window (Python and Scrapy imports, crawler settings) is not
    ours: there KeyboardInterrupt or SIGTERM ends the process at once.
    """

    def __init__(self, crawler):
        self.crawler = crawler
        self.signum = None
        # Built inside Crawler.__init__, after Scrapy installed the reactor.
        from twisted.internet import reactor

        self.reactor = reactor
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._received)
        except ValueError:
            pass  # not the main thread: a script runs the crawl, and owns its signals

    def _received(self, signum, _frame):
        if self.signum is not None:
            # The second one: die of it, as an unhandled SIGINT/SIGTERM would.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        # As Scrapy's own handler does, it logs here: the crawl's log is
        # where a user looks for what became of a cancel.
        logger.info(
            "Received %(signame)s while the crawl starts: it stops once started. Send again to force",
            {"signame": signal.Signals(signum).name},
        )
        # Runs once reactor.run has begun, hence after CrawlerProcess.start
        # has installed Scrapy's handlers (callFromThread is what Scrapy's
        # own handler uses: safe in a signal handler).
        self.reactor.callFromThread(self._replay)

    def _replay(self):
        engine = self.crawler.engine
        if not self.crawler.crawling:
            return  # the crawl failed to start or has stopped already
        if engine is None or not engine.running:
            # An extension still holds the start up (a deferred at
            # spider_opened or engine_started): engine.stop would fail.
            # engine_started handlers run before running is set, hence the
            # call one turn later.
            self.crawler.signals.connect(self._after_start, signals.engine_started)
            return
        logger.info("a stop was asked while the crawl was starting: stopping it now")
        handler = signal.getsignal(self.signum)
        if callable(handler) and handler != self._received:
            # CrawlerProcess._signal_shutdown: logs, arms the second signal
            # to force, and stops the crawler gracefully.
            handler(self.signum, None)
        else:
            # Shutdown handlers not installed (install_signal_handlers=False).
            self.crawler.stop()

    def _after_start(self):
        self.crawler.signals.disconnect(self._after_start, signals.engine_started)
        self.reactor.callLater(0, self._replay)


class _Channel(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 4 << 20

    def lineReceived(self, line):
        self.transport.write(self.factory.service.handle(line) + b"\n")
        self.transport.loseConnection()

    def lineLengthExceeded(self, line):
        self.transport.loseConnection()


def _refs(obj):
    """Spiders become "spider:<hex id>:<name>", in keys and in values."""
    if isinstance(obj, Spider):
        return f"spider:{id(obj):x}:{obj.name}"
    if isinstance(obj, dict):
        return {_refs(k): _refs(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_refs(v) for v in obj]
    return obj


def dumps(obj):
    return json.dumps(_refs(obj), cls=ScrapyJSONEncoder, separators=(",", ":"))
