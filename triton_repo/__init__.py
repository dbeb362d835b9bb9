"""Triton model repository templates: one folder per model, ``1/model.py`` thin adapters.

The ``config.pbtxt`` files are not stored here: :func:`export.repository.write_repository`
generates them from :mod:`banet.spec` and copies these ``model.py`` files next to them. Each
adapter only moves tensors in and out of Triton and calls :mod:`banet.processing`; the server's
Python needs numpy, pillow, simplejpeg and the ``banet`` package (no torch; ``deploy/Dockerfile``).
``banet_preprocess/1/dali.py`` is the DALI variant of the first step, which Triton's DALI backend
autoserializes (``export.dali``).
"""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
"""Folder holding ``<model>/1/model.py`` for the Python-backend models."""
