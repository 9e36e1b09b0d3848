"""Hook that draws the SAIP panels from training batches."""
from typing import Optional, Sequence

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from mmsaip.visualization import (BRANCHES, PANEL_NAMES, draw_saip_panels,
                                  run_saip_visual_pass)
from mmsaip.visualization.saip_panels import check_panel_names


@HOOKS.register_module()
class SAIPVisualizationHook(Hook):
    """Save the SAIP panels of a training batch every ``interval`` iterations.

    After every ``interval``-th training iteration, the main process reruns
    the model on the first ``num_samples`` samples of that iteration's
    batch without gradients and in eval mode, draws their panels (see
    :func:`mmsaip.visualization.draw_saip_panels`) and passes them to
    ``runner.visualizer.add_image`` under the names
    ``saip_<panel>_sample<i>`` with step ``runner.iter + 1``. The default
    ``LocalVisBackend`` writes them as
    ``saip_<panel>_sample<i>_<step>.png`` in
    ``<work_dir>/<timestamp>/vis_data/vis_image/``. A
    ``TensorboardVisBackend`` in the config's ``vis_backends`` shows them
    under the Images tab.

    The rerun draws its own rescale factors and CSR mask, so the pictures
    show the model on the batch, not the exact draws of the training step.
    It runs inside ``torch.random.fork_rng``, so training draws the same
    random numbers with and without this hook.

    The hook is off in the shipped configs. Turn it on by adding it to
    ``custom_hooks`` next to the base config's hooks, which include
    :class:`SAIPTeacherHook` and must stay::

        custom_hooks = [
            *_base_.custom_hooks,
            dict(type='SAIPVisualizationHook', interval=1000),
        ]

    Args:
        interval (int): Draw after every ``interval`` training iterations.
            Defaults to 1000.
        num_samples (int): Samples of the batch to draw, from the first.
            Defaults to 1.
        panels (Sequence[str]): Panels to draw, from 'views', 'css', 'csr'
            and 'attention'. Defaults to all four.
        branch (str): Backbone of the attention panel: 'teacher' or
            'student'. Defaults to 'teacher'.
    """

    priority = 'LOW'  # after SAIPTeacherHook has updated the teacher

    def __init__(self,
                 interval: int = 1000,
                 num_samples: int = 1,
                 panels: Sequence[str] = PANEL_NAMES,
                 branch: str = 'teacher') -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be an int >= 1, got {interval!r}')
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError('num_samples must be an int >= 1, got '
                             f'{num_samples!r}')
        if branch not in BRANCHES:
            raise ValueError(f'branch must be one of {BRANCHES}, got '
                             f'{branch!r}')
        self.interval = interval
        self.num_samples = num_samples
        self.panels = check_panel_names(panels)
        self.branch = branch

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Draw and save the panels on every ``interval``-th iteration."""
        if data_batch is None or not is_main_process():
            return
        if not self.every_n_train_iters(runner, self.interval):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model

        device = next(model.parameters()).device
        fork_devices = [device] if device.type == 'cuda' else []
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=fork_devices), \
                    torch.no_grad():
                batch = model.data_preprocessor(data_batch, training=False)
                # Only the drawn samples go through the model.
                inputs = {
                    key: value[:self.num_samples]
                    for key, value in batch['inputs'].items()
                }
                visual = run_saip_visual_pass(model, inputs, self.branch)
        finally:
            model.train(was_training)

        step = runner.iter + 1
        for index in range(min(self.num_samples, visual.batch_size)):
            panels = draw_saip_panels(visual, index, self.panels)
            for name, image in panels.items():
                runner.visualizer.add_image(
                    f'saip_{name}_sample{index}', image, step=step)
