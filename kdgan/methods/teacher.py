"""TEACHER: the teacher alone, the reference the classifier is compressed from.

It is the pretrained teacher every distillation baseline distils from (pretrained once per
dataset, n and seed, and shared through the pretraining cache), evaluated as it is: no game
epochs follow its pretraining (`epochs` is fixed to 0), so its figure is exactly the model
MIMIC, DISTN and NOISY learn from. (KDGAN and CODIS go on training their teacher; their runs
report it with `eval_teacher=true`.)
"""

from __future__ import annotations

from kdgan.methods.base import Method

METHOD = Method(players=("tch",), evaluated="tch", fixed=(("epochs", 0),))
