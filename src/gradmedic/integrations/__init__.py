"""Integrations: the trainers and dashboards gradmedic drops into, each behind an optional extra.

=========================================== ===================================== ======================
module                                      what                                  install
=========================================== ===================================== ======================
:mod:`gradmedic.integrations.lightning`     ``GradMedic``, a Lightning Callback   ``gradmedic[lightning]``
:mod:`gradmedic.integrations.transformers`  ``GradMedicCallback`` for ``Trainer`` ``gradmedic[transformers]``
:mod:`gradmedic.integrations.tensorboard`   ``TensorBoardSink``                   ``gradmedic[tensorboard]``
:mod:`gradmedic.integrations.wandb`         ``WandbSink``                         ``gradmedic[wandb]``
:mod:`gradmedic.integrations.distributed`   DDP and FSDP2 reduction (now in       (torch only)
                                            :mod:`gradmedic.monitor.distributed`)
=========================================== ===================================== ======================

Importing this package imports none of those libraries; each module imports its own and says
what to install when it is missing.

Example:
    >>> from gradmedic.integrations import distributed
    >>> distributed.REDUCTIONS["loss"]
    'mean'
"""
