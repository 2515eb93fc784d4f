"""A bounded load client: N requests over T threads, each for a page of users.

    python load.py http://127.0.0.1:8000 --requests 200 --threads 4 --pages 100
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pages", type=int, default=100, help="pages to cycle through")
    args = parser.parse_args()
    counter = iter(range(args.requests))
    lock = threading.Lock()
    failures = []
    rows = [0]

    def worker() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                with urllib.request.urlopen(f"{args.url}/users?page={n % args.pages}",
                                            timeout=60) as answer:
                    got = len(json.load(answer))
                with lock:
                    rows[0] += got
            except OSError as exc:
                failures.append(str(exc))

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"{args.requests} requests, {rows[0]:,} rows, {len(failures)} failed, "
          f"{time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
