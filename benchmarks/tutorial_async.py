"""The tutorial's async benchmark ("RAG with Milvus and LlamaIndex Async API"), reproduced.

Runs the tutorial's four experiments (async/sync × add/search × 10/100/1000, dim 768, COSINE,
Strong) for LlamaIndex's MilvusVectorStore and asyncrag's CoalescingMilvusVectorStore, on a
real Milvus 2.3.5 server that it starts and stops itself and on Milvus Lite; prints the table
next to the tutorial's published numbers, writes JSON and a PNG chart.

    python benchmarks/tutorial_async.py [--quick] [--backends server,lite] [--sizes 10,100,1000]
                                        [--out benchmarks/results/tutorial_async.json]

Same as `asyncrag bench tutorial`. The logic is in src/asyncrag/bench/tutorial.py.
"""

import sys

from asyncrag.bench.tutorial import main

if __name__ == "__main__":
    sys.exit(main())
