"""Distributed launch on machines without CUDA."""
import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import MMLogger


def prepare_cpu_distributed(cfg: Config) -> None:
    """Adapt a config so that a distributed launch also runs on CPUs.

    mmengine 0.10's ``init_dist`` calls ``torch.cuda.set_device`` and its
    default DDP wrapper passes ``device_ids``; both fail without CUDA. On a
    machine without CUDA, this function switches an NCCL backend to gloo,
    starts the gloo process group itself for the 'pytorch' launcher (so
    that mmengine skips ``init_dist``) and builds DDP without
    ``device_ids``. On machines with CUDA it only leaves the config as it
    is.

    Args:
        cfg (Config): The full config; ``cfg.launcher`` must be set.

    Raises:
        RuntimeError: For the 'slurm' or 'mpi' launcher without CUDA.
    """
    if torch.cuda.is_available():
        return
    env_cfg = cfg.get('env_cfg')
    if env_cfg is not None:
        dist_cfg = env_cfg.setdefault('dist_cfg', {})
        if dist_cfg.get('backend', 'nccl') == 'nccl':
            dist_cfg['backend'] = 'gloo'
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return
    if launcher != 'pytorch':
        raise RuntimeError(
            f"The '{launcher}' launcher needs CUDA in mmengine 0.10. On a "
            "machine without GPUs, launch with tools/dist_train.sh (the "
            "'pytorch' launcher).")
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
        MMLogger.get_current_instance().info(
            'CUDA is not available: started the gloo process group '
            f'(rank {torch_dist.get_rank()} of '
            f'{torch_dist.get_world_size()}).')
    wrapper_cfg = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_cfg['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper_cfg
