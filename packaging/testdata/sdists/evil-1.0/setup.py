# An sdist's setup.py is uploaded code: run by pip while the environment is
# installed. This one tries to leave the install's sandbox, then fails, so
# that the upload's refusal carries what each attempt got:
#   write:   a file in items_dir, which the crawl user owns (EROFS wanted)
#   connect: the daemon's API on the lab's loopback (refused wanted: no
#            network without pip_index_url)
import errno
import os
import socket

got = {}
try:
    with open("/var/lib/scrapyd/items/planted-by-setup", "w") as f:
        f.write("planted")
    got["write"] = "ok"
except OSError as e:
    got["write"] = errno.errorcode.get(e.errno, str(e.errno))
try:
    socket.create_connection(("127.0.0.1", 6800), timeout=5).close()
    got["connect"] = "ok"
except OSError as e:
    got["connect"] = errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
raise SystemExit("setup.py sandbox: " + " ".join("%s=%s" % kv for kv in sorted(got.items())))
