"""Reference commands and experiments built on the ``bench`` library, one folder per task.

As torchvision keeps ``references/<task>/`` apart from its library, these are the stand-alone
measurements (each a ``python -m references....`` command) that use ``bench`` (the ``banet-bench``
library), ``export`` and ``banet``; nothing below ``references`` imports them back.

- ``references.demo``: ``make demo``, the whole pipeline end to end.
- ``references.gpu_check``: the GPU host's check of training, export and the bench paths.
- ``references.serving``: the serving hot path (``hotpath``), served latency (``serving_latency``), the soak.
- ``references.precision``: INT8 recipes on the CPU (``int8_search``), the spread of the bench's ratios
  (``spread``), the export's per-precision parity (``precision_parity``) and TensorRT builds (``tensorrt_builds``).
- ``references.training``: experiments that train models: ``compare`` (``banet-compare``, with its tables in
  ``compare_tables``) and ``before_after``.
"""
