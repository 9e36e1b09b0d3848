"""Save and restore torch's random state so resumed runs repeat exactly."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

RNG_STATE_KEY = 'torch_rng_state'


@HOOKS.register_module()
class TorchRNGStateHook(Hook):
    """Store torch's random state in checkpoints and restore it on resume.

    SAIP draws its rescale factors and CSR masks from torch's global
    generator. mmengine saves no random state, so without this hook a
    resumed run draws different masks from the uninterrupted run.

    The state is restored before the first iteration after resuming, that
    is after the training loop has skipped the batches already trained.
    numpy's state is deliberately not restored: with ``num_workers=0`` the
    data pipeline is the only user of numpy's generator, and the loop's
    skipping of the trained batches already brings it to the saved
    position. With worker processes, each worker's seed is derived from the
    run's seed and the epoch, so the data order repeats too but the
    augmentations of a partly trained epoch may differ.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._pending_state: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add the CPU (and CUDA) generator states to the checkpoint."""
        state = dict(cpu=torch.get_rng_state())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint[RNG_STATE_KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved state until the first resumed iteration."""
        self._pending_state = checkpoint.get(RNG_STATE_KEY)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Restore the saved state once, before the first iteration."""
        if self._pending_state is None:
            return
        torch.set_rng_state(self._pending_state['cpu'])
        cuda_states = self._pending_state.get('cuda')
        if cuda_states is not None and torch.cuda.is_available() and \
                len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        self._pending_state = None
