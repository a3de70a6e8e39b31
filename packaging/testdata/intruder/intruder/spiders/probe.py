import errno
import os

import scrapy


def attempt(op):
    """"ok", or the name of the errno the attempt failed with."""
    try:
        op()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def write(path):
    return attempt(lambda: open(path, "a").close())


def read(path):
    return attempt(lambda: open(path, "rb").read(1))


class ProbeSpider(scrapy.Spider):
    """Yields one item: what happened to each attempt to reach the daemon's
    state, another project's files or the system. -a other_egg=PATH names
    another project's egg; -a lib=DIR, -a log=DIR and -a etc=DIR the daemon's
    data, log and configuration directories (a test's root)."""

    name = "probe"
    start_urls = ["data:,probe"]
    lib = "/var/lib/scrapyd"
    log = "/var/log/scrapyd"
    etc = "/etc/scrapyd"

    def parse(self, response):
        lib, log = self.lib, self.log
        yield {
            "uid": os.getuid(),
            "write_eggs": write(lib + "/eggs/intruder/planted.egg"),
            "read_other_egg": read(self.other_egg),
            "read_db": read(lib + "/dbs/scrapyd.db"),
            "rename_dbs": attempt(lambda: os.rename(lib + "/dbs", lib + "/dbs.old")),
            "write_other_log": write(log + "/sample/params/planted.log"),
            "write_daemon_log": write(log + "/scrapyd.log"),
            "write_etc": write(self.etc + "/conf.d/99-planted.conf"),
            "write_own_items": write(lib + "/items/intruder/probe/planted"),
            "write_httpcache": write(".scrapy/planted"),
            "write_tmp": write("/tmp/planted"),
            "see_pid1": os.path.exists("/proc/1/cmdline"),
        }
