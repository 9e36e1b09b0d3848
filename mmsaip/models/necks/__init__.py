from .csm_projector import CSMProjector

__all__ = ['CSMProjector']
