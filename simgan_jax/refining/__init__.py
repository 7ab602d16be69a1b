"""Using a trained refiner: whole datasets refined and written out, exported and shipped refiners.

``refine`` (a synthetic dataset or PNG folder through a checkpoint's refiner, written
as a TFDS dataset or PNGs; ``refine_input``, ``refine_store`` and ``refine_png`` are
its inputs, resumable chunked output and PNG writer), ``export`` (a checkpoint's
refiner as a standalone file) and ``pretrained`` (the refiners shipped in
``pretrained/NAME/``, ``--checkpoint=pretrained:NAME``).
"""
