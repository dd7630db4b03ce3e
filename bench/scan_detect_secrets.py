"""detect-secrets on remit-scan's 4 KB benchmark bodies: MB/s (median of rounds) and recall.

Run by bench/scan.sh. Each body is scanned as detect-secrets scans a string
(`detect-secrets scan --string`): line by line with the default plugins and filters.
"""
import json
import statistics
import sys
import time

from detect_secrets.core.scan import scan_line
from detect_secrets.settings import default_settings


def main():
    path, rounds = sys.argv[1], int(sys.argv[2])
    rows = [json.loads(line) for line in open(path)]
    bodies = [(r["body"], bool(r["expect"])) for r in rows]
    total = sum(len(b.encode()) for b, _ in bodies)
    with default_settings():
        def flagged(body):
            return any(True for line in body.splitlines() for _ in scan_line(line))

        hits = fp = pos = 0
        for body, positive in bodies:
            f = flagged(body)
            if positive:
                pos += 1
                hits += f
            else:
                fp += f
        rates = []
        cpu = time.process_time()
        for _ in range(rounds):
            t = time.perf_counter()
            for body, _ in bodies:
                flagged(body)
            rates.append(total / (time.perf_counter() - t) / 1e6)
        # CPU time over all rounds: what a busy machine's waits for the core do not inflate.
        cpu_mbps = total * rounds / (time.process_time() - cpu) / 1e6
    mbps = statistics.median(rates)
    print(f"detect-secrets bench4k: bodies={len(bodies)} bytes={total} MB/s={mbps:.3f} "
          f"cpu_MB/s={cpu_mbps:.3f} "
          f"recall={hits / pos:.4f} ({hits}/{pos}) false_positive_bodies={fp}")


if __name__ == "__main__":
    main()
