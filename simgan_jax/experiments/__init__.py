"""Experiments built from the reproduction stages (``evaluation/reproduce.py``) for data
the project does not ship: ``image_folder`` (SimGAN on your own folders, then
"does refinement help my classifier or regressor?"), run by ``launch/reproduce.py
--experiment=image_folder``."""
