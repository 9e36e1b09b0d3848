"""Hook that drives the SAIP teacher and schedules."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class SAIPTeacherHook(Hook):
    """Tell SAIP the training position and update its EMA teacher.

    Before each iteration it calls ``SAIP.set_train_progress`` with the
    runner's iteration, so the teacher momentum and the CSM teacher
    temperature follow the global schedule and resume where they stopped.
    After each iteration whose optimizer step was applied it calls
    ``SAIP.update_teacher``. Steps that were not applied (an accumulation
    micro-batch, a non-finite loss, or an AMP step skipped for inf
    gradients) leave the teacher unchanged.

    The step is read from the optimizer wrapper's ``last_step_applied``
    attribute, which :class:`SAIPOptimWrapper` and
    :class:`SAIPAmpOptimWrapper` set. With a plain mmengine wrapper, the
    accumulation boundary is used instead, and skipped AMP steps cannot be
    seen.
    """

    priority = 'NORMAL'  # after the optimizer step, before checkpointing

    def __init__(self) -> None:
        self._warned_plain_wrapper = False

    @staticmethod
    def _algorithm(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Pass the iteration about to run to the algorithm."""
        self._algorithm(runner).set_train_progress(
            runner.iter, runner.max_iters, len(runner.train_dataloader))

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Update the teacher if the optimizer applied a step."""
        optim_wrapper = runner.optim_wrapper
        applied = getattr(optim_wrapper, 'last_step_applied', None)
        if applied is None:
            if not self._warned_plain_wrapper:
                runner.logger.warning(
                    f'{type(optim_wrapper).__name__} does not report '
                    'skipped steps; the teacher is updated at every '
                    'accumulation boundary. Use SAIPOptimWrapper or '
                    'SAIPAmpOptimWrapper to skip non-finite steps.')
                self._warned_plain_wrapper = True
            # update_params has already counted this iteration, so
            # should_update() is True exactly when it stepped.
            applied = optim_wrapper.should_update()
        if applied:
            self._algorithm(runner).update_teacher()
