"""ordersync benchmark harness: the real pipeline against the sandbox, measured.

Run ``python -m bench.run [--quick] [--json out.json]`` (or ``make bench``). Every scenario runs
the real ``ordersync`` command lines as subprocesses (poller, Celery workers) against a sandbox
served by a *separate* process (:mod:`bench.sandbox_proc`), so the CPU and memory measured are
the daemon's alone. Results are printed, written as JSON and kept in ``BENCHMARKS.md`` (one
section: the latest run and a history table).

``python -m bench.realistic`` (also run by ``make bench``) measures a merchant's first complete
sync against APIs with real-world latency and enforced budgets, next to the floor the budgets
allow; it keeps the "Realistic scenario" section of ``BENCHMARKS.md``.

``python -m bench.fleet`` (``make bench-fleet``) measures one deployment serving many stores
(issue 16): throughput and fairness of the first syncs, and the acceptance checks (a broken
store isolated and recovering, a killed poller's stores handed over, a store added while
running); it keeps the "Many stores, one deployment" section of ``BENCHMARKS.md``.
"""
