"""One Lambda-style cold start of orga-ai, for ``make bench``: import the entry point, serve one event, then warm ones.

    python benchmarks/lambda_invoke.py EVENT.json --warm 200 [--bare]

The first line on stdout is written as soon as the first invocation has its response (the parent times spawn to
that line: interpreter start, imports, the handler's set-up and the first call to Orga Cloud). Then ``--warm``
invocations are timed in-process, and the last line reports their median and the process's peak RSS. ``--bare``
calls ``OrgaAI().get_session_config()`` instead of the handler: the floor the policy layer adds to.
"""

import json
import os
import sys
import time

event_path = sys.argv[1]
warm = int(sys.argv[sys.argv.index("--warm") + 1]) if "--warm" in sys.argv else 0
if "--bare" in sys.argv:
    from orga_ai import OrgaAI

    orga = OrgaAI()

    def invoke() -> int:
        orga.get_session_config()
        return 200

else:
    from orga_ai.integrations.aws_lambda import handler

    with open(event_path, "rb") as file:
        event = json.load(file)
    if "BENCH_BEARER" in os.environ:  # the function's shared secret, as its caller sends it
        event["headers"]["authorization"] = "Bearer " + os.environ["BENCH_BEARER"]

    def invoke() -> int:
        status: int = handler(event, None)["statusCode"]
        return status


status = invoke()
sys.stdout.write(f'{{"status": {status}}}\n')
sys.stdout.flush()
samples = []
for _ in range(warm):
    t0 = time.perf_counter_ns()
    invoke()
    samples.append(time.perf_counter_ns() - t0)
samples.sort()
median_us = samples[len(samples) // 2] / 1000 if samples else None
# VmHWM, this process's own peak: ru_maxrss would also count the parent's RSS at fork (Linux carries it over exec).
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
sys.stdout.write(json.dumps({"warm_median_us": median_us, "peak_rss_kib": peak}) + "\n")
