"""Archive the dev chain's next segment in a child process.

Archiving a segment is tens of seconds of CPU work inside native code that holds the GIL for
long stretches; in a thread it would starve the dev node's event loop (late slots, slow
shutdown). The dev node therefore runs ``python -m services.node.dev_archive_worker`` which
loads the chain state from the data directory, archives exactly one segment (writing pieces,
header and archiver state, see :mod:`services.node.dev_chain`), prints progress lines on stderr
and the new header's spec-05 JSON as the last line on stdout. Killing it at any point is safe:
the interrupted segment is archived again on the next run. The segment's record commitments,
witnesses and erasure coding are split over a thread pool of up to 8 threads (one per core).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from services.node.dev_chain import DevChain
from services.node.dev_crypto import load_erasure, load_kzg
from services.protocol.parallel import Workers

MAX_THREADS = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev_archive_worker")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--history-seed", required=True)
    parser.add_argument("--kzg-params", default=None)
    parser.add_argument("--chain-params", required=True, help="JSON object stored in chain.json")
    args = parser.parse_args(argv)
    threads = max(1, min(MAX_THREADS, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="archive") as pool:
        chain = DevChain(
            args.data_dir, args.history_seed, load_kzg(args.kzg_params), load_erasure(), json.loads(args.chain_params),
            Workers(pool, threads),
        )

        def progress(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        segment = chain.archive_next_segment(progress)
    print(json.dumps(segment.header.to_json(), separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
