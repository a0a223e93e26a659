"""lossforge's benchmark suite (issue 5): ``python -m benchmarks.run --help``.

Modules: `run` (the command), `cases` (what is timed, with which inputs), `peers` (NumPy,
PyTorch, JAX, TensorFlow), `floor` (the read-bandwidth floor), `timing`, `latency`,
`coldstart`, `cuda` (``--device cuda``) and `report` (Markdown, JSON, PNG).
"""
