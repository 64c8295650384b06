"""Speed and memory of tinymf next to torch on the same recommender workloads.

``python -m benchmarks`` runs every (framework, model, threads) measurement in its own
subprocess and writes a JSON record and a Markdown table; see ``benchmarks/README.md``.
"""
