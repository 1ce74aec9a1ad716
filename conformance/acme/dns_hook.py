"""lego ``--dns exec`` hook: put/remove the TXT record at pebble-challtestsrv's management API.

lego calls ``<hook> present <fqdn> <value>`` and ``<hook> cleanup <fqdn> <value>``;
``CHALLTESTSRV_URL`` names the management API (``http://127.0.0.1:<port>``).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def main(argv: list[str]) -> int:
    action, fqdn, value = argv[1], argv[2], argv[3]
    base = os.environ["CHALLTESTSRV_URL"]
    if action == "present":
        path, body = "/set-txt", {"host": fqdn, "value": value}
    elif action == "cleanup":
        path, body = "/clear-txt", {"host": fqdn}
    else:
        return 0
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return 0 if resp.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
