"""The experiments end to end, each with its report (``launch/reproduce.py --experiment=...``).

``reproduce`` (train SimGAN over one or more seeds, select, refine, train gaze
estimators per training set, label preservation; the eye experiment) and ``report``
(its ``report.md`` and figures); ``hand_reproduce`` and ``hand_report`` (the hand
experiment's estimator stages and report); ``image_folder`` and ``folder_report``
("does refinement help my task?" on your own folders); shared by them: ``seeds``
(several SimGAN seeds), ``rows`` (the table's rows) and ``caveats`` (what a report
prints about its own inputs).
"""
