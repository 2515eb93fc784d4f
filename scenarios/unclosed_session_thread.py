"""A Session never closed in a long-lived worker thread (or a scoped_session never removed).

Each worker thread loads every user, drops the objects, and keeps its Session open while
it waits for more work. The Session holds its connection; on PyMySQL that connection
keeps its last buffered result until its next statement, so each idle worker pins a
whole result set.
"""

import threading


def run(ctx):
    done = threading.Barrier(ctx.workers + 1)
    release = threading.Event()
    sessions = []

    def worker(index: int):
        session = ctx.Session()
        sessions.append(session)
        count = len(session.query(ctx.User).all())  # the objects are dropped at once
        ctx.mark(f"worker {index} loaded {count} rows; session left open")
        done.wait()
        release.wait()  # a long-lived worker, idle, its Session still open

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(ctx.workers)]
    for thread in threads:
        thread.start()
    done.wait()
    return _Idle(sessions, release, threads)


class _Idle:
    """Keeps the idle workers until the workload-end phase is measured, then ends them."""

    def __init__(self, sessions, release, threads):
        self.sessions, self.release, self.threads = sessions, release, threads

    def __del__(self):
        self.release.set()
        for session in self.sessions:
            session.close()
