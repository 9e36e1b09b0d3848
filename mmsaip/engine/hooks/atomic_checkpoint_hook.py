"""Checkpoint hook that never leaves a broken latest checkpoint."""
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

from ..fileio import ATOMIC_BACKEND_NAME, atomic_write


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` with crash-safe saving.

    Compared with mmengine's hook (0.10), three things change:

    - checkpoints are written to a temporary file and renamed into place,
      so a kill during a save leaves the previous files untouched;
    - the ``last_checkpoint`` pointer is replaced the same way, and only
      after the checkpoint it names is complete;
    - checkpoints beyond ``max_keep_ckpts`` are removed after the new one
      is saved, not before, so a failed save never costs an old checkpoint.

    It takes the same arguments as ``CheckpointHook``. Local paths use the
    atomic backend unless ``backend_args`` names another one.
    """

    def __init__(self, *args, backend_args=None, **kwargs) -> None:
        if backend_args is None:
            backend_args = dict(backend=ATOMIC_BACKEND_NAME)
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        if is_main_process():
            atomic_write(
                str(self.last_ckpt).encode('utf-8'),
                osp.join(runner.work_dir, 'last_checkpoint'))
        self._remove_old_checkpoint(runner, step)

    def _remove_old_checkpoint(self, runner, step: int) -> None:
        """Record ``step`` and delete the checkpoint that falls out of the
        newest ``max_keep_ckpts``."""
        if self.max_keep_ckpts <= 0:
            return
        if self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step:
            return
        old_step = None
        # The deque has maxlen=max_keep_ckpts: take the oldest out first.
        if len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
            old_step = self.keep_ckpt_ids.popleft()
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))
        if old_step is None or not is_main_process():
            return
        old_path = self.file_backend.join_path(
            self.out_dir, self.filename_tmpl.format(old_step))
        if self.file_backend.isfile(old_path):
            self.file_backend.remove(old_path)
        elif self.file_backend.isdir(old_path):
            self.file_backend.rmtree(old_path)
